//! The commented example settings file must stay loadable and equal to the defaults.

use geoffrey::config::Settings;
use std::path::Path;

#[test]
fn example_file_matches_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../geoffrey.example.toml");
    let settings = Settings::load(Some(&path)).unwrap();
    assert_eq!(settings, Settings::default());
}
