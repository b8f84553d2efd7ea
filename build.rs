//! Links the Vosk library (libvosk.so, for the `vosk` speech engine): from
//! `VOSK_LIB_DIR` if set, else from models/vosk/lib, which `models/fetch
//! vosk-lib` fills from PyPI's vosk==0.3.45 wheel (run here when missing).
//! The binary finds the library again at run time by its rpath.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=VOSK_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dir = match std::env::var("VOSK_LIB_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let dir = root.join("models/vosk/lib");
            if !dir.join("libvosk.so").exists() {
                let ok = Command::new("bash")
                    .arg(root.join("models/fetch"))
                    .arg("vosk-lib")
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    panic!(
                        "libvosk.so is missing and `models/fetch vosk-lib` failed; \
                         set VOSK_LIB_DIR to a folder holding libvosk.so"
                    );
                }
            }
            dir
        }
    };
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("libvosk.so").display()
    );
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
