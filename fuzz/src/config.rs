//! What an operator gives relayd: the `--config` TOML file and
//! `--static-stream` values.

use std::path::Path;

use relay_userspace::{config::Options, static_stream};

/// `config_toml`: a `--config` file merged into empty command-line options
/// and resolved into relayd's configuration (interfaces parsed, listen
/// addresses, port range, ...); its `static-stream` entries parsed as
/// relayd parses them at start-up. Nothing here opens a socket or a file.
pub fn config_toml(data: &[u8]) {
    // relayd reads the file with read_to_string: not UTF-8 is an I/O error.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = match Options::default().merge_file(Path::new("fuzz.toml"), text) {
        Ok(options) => options,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = options.state_dir_named();
    for (slot, entry) in options.static_stream.iter().enumerate() {
        let _ = static_stream::parse(entry, slot as u32).map_err(|e| e.to_string());
    }
    match options.resolve() {
        Ok(config) => {
            assert!(!config.interfaces.is_empty());
            assert!(config.port_min <= config.port_max);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// `static_stream`: one `--static-stream` value.
pub fn static_stream(data: &[u8]) {
    // Command-line arguments reach clap as OsString; relayd takes them as
    // String, so only UTF-8 gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match static_stream::parse(text, 7) {
        Ok(spec) => assert_eq!(spec.stats_slot, 7),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
