//! Where the bundled files are: the encoder and the demo data.

use std::path::PathBuf;

/// The bundled assets folder: `LABELREST_ASSETS`, else `assets` beside the
/// current folder or above the executable, else the source tree's.
pub fn assets_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LABELREST_ASSETS") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("assets");
    if here.join("models").is_dir() {
        return here;
    }
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(4) {
            let a = anc.join("assets");
            if a.join("models").is_dir() {
                return a;
            }
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

pub const BUNDLED_MODEL: &str = "all-MiniLM-L6-v2";

/// The model folder a setting names ("" or "bundled" is the bundled encoder).
pub fn model_dir(setting: &str) -> PathBuf {
    if setting.is_empty() || setting == "bundled" {
        assets_dir().join("models").join(BUNDLED_MODEL)
    } else {
        PathBuf::from(setting)
    }
}
