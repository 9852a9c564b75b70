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

/// The folders where a Hugging Face hub cache can be, in the order the
/// `huggingface_hub` library reads them: `HF_HUB_CACHE`, `HF_HOME/hub`,
/// `XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub`.
pub fn hf_cache_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(d) = std::env::var_os("HF_HUB_CACHE") {
        v.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("HF_HOME") {
        v.push(PathBuf::from(d).join("hub"));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        v.push(PathBuf::from(d).join("huggingface").join("hub"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        v.push(PathBuf::from(h).join(".cache").join("huggingface").join("hub"));
    }
    v.dedup();
    v
}

/// A model given on the command line: a folder, or a Hugging Face name
/// (`owner/name`) found in the local hub cache without the network (the
/// snapshot `refs/main` names, else the newest one). The folder returned
/// is absolute. One clear error when neither is there.
pub fn resolve_model(arg: &std::path::Path) -> anyhow::Result<PathBuf> {
    if arg.exists() {
        return std::fs::canonicalize(arg).map_err(|e| anyhow::anyhow!("model folder {}: {e}", arg.display()));
    }
    let s = arg.to_string_lossy();
    let parts: Vec<&str> = s.split('/').collect();
    let hub_name = parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != "..") && !s.starts_with('.');
    if !hub_name {
        anyhow::bail!("no model folder at {}", arg.display());
    }
    let dirs = hf_cache_dirs();
    for hub in &dirs {
        let repo = hub.join(format!("models--{}--{}", parts[0], parts[1]));
        if !repo.is_dir() {
            continue;
        }
        let snapshots = repo.join("snapshots");
        let by_ref = std::fs::read_to_string(repo.join("refs").join("main")).ok().map(|r| snapshots.join(r.trim()));
        let newest = || -> Option<PathBuf> {
            let mut v: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&snapshots)
                .ok()?
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
                .collect();
            v.sort();
            v.pop().map(|x| x.1)
        };
        if let Some(snap) = by_ref.filter(|p| p.is_dir()).or_else(newest) {
            if snap.join("config.json").exists() {
                return std::fs::canonicalize(&snap).map_err(|e| anyhow::anyhow!("model {s}: {e}"));
            }
            anyhow::bail!("model {s}: the cached snapshot {} has no config.json (an incomplete download?)", snap.display());
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    anyhow::bail!(
        "model {s} is neither a folder nor in the local Hugging Face cache (looked in {}); download it there first (`huggingface-cli download {s}`) or give its folder",
        if looked.is_empty() { "no cache folder: HOME is not set".to_string() } else { looked.join(", ") }
    )
}
