//! `netmon layer`: builds the Lambda layer zip — the extension, the interceptor and the exec
//! wrapper that preloads it into the runtime.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use zip::write::SimpleFileOptions;

/// The exec wrapper (`AWS_LAMBDA_EXEC_WRAPPER=/opt/netmon-wrapper`): POSIX sh, adds the
/// interceptor to `LD_PRELOAD` (keeping what was there) and execs the runtime command it is
/// given. The region path matches the extension's default.
pub const WRAPPER: &str = r#"#!/bin/sh
# netmon exec wrapper: set AWS_LAMBDA_EXEC_WRAPPER=/opt/netmon-wrapper on the function.
# Preloads libnetmon.so into the runtime (keeping any existing LD_PRELOAD) and execs it.
lib="${NETMON_LIB:-/opt/lib/libnetmon.so}"
if [ "${NETMON_DISABLE:-0}" != 1 ] && [ -f "$lib" ]; then
    if [ -n "${LD_PRELOAD:-}" ]; then
        LD_PRELOAD="$lib:$LD_PRELOAD"
    else
        LD_PRELOAD="$lib"
    fi
    export LD_PRELOAD
    if [ -z "${NETMON_SHM:-}" ]; then
        NETMON_SHM="${NETMON_SHM_DIR:-/tmp/netmon-$(id -u)}/lambda.shm"
        export NETMON_SHM
    fi
fi
exec "$@"
"#;

/// Writes the layer zip: `extensions/netmon`, `lib/libnetmon.so`, `netmon-wrapper`.
pub fn build(out: &Path, extension: &Path, interceptor: &Path) -> Result<u64> {
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let exec = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    for (name, src) in [
        ("extensions/netmon", extension),
        ("lib/libnetmon.so", interceptor),
    ] {
        let bytes = std::fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
        zip.start_file(name, exec)?;
        zip.write_all(&bytes)?;
    }
    zip.start_file("netmon-wrapper", exec)?;
    zip.write_all(WRAPPER.as_bytes())?;
    zip.finish()?;
    Ok(std::fs::metadata(out)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn layer_has_the_three_files_executable() {
        let d = tempfile::tempdir().unwrap();
        let ext = d.path().join("netmon");
        let lib = d.path().join("libnetmon.so");
        std::fs::write(&ext, b"ELF-ish").unwrap();
        std::fs::write(&lib, b"SO-ish").unwrap();
        let out = d.path().join("layer.zip");
        build(&out, &ext, &lib).unwrap();
        let mut z = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
        let mut names: Vec<String> = (0..z.len())
            .map(|i| z.by_index(i).unwrap().name().unwrap().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["extensions/netmon", "lib/libnetmon.so", "netmon-wrapper"]
        );
        for i in 0..z.len() {
            let f = z.by_index(i).unwrap();
            assert_eq!(f.unix_mode().unwrap() & 0o777, 0o755, "{:?}", f.name());
        }
        let mut w = String::new();
        z.by_name("netmon-wrapper")
            .unwrap()
            .read_to_string(&mut w)
            .unwrap();
        assert!(w.starts_with("#!/bin/sh\n"));
    }

    #[test]
    fn wrapper_preserves_ld_preload_and_execs() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("wrapper");
        std::fs::write(&w, WRAPPER).unwrap();
        let lib = d.path().join("lib.so");
        std::fs::write(&lib, b"").unwrap();
        let out = std::process::Command::new("sh")
            .arg(&w)
            .args(["sh", "-c", "echo \"$LD_PRELOAD|$NETMON_SHM\""])
            .env("NETMON_LIB", &lib)
            .env("LD_PRELOAD", "/other.so")
            .env("NETMON_SHM_DIR", "/tmp/x")
            .env_remove("NETMON_SHM")
            .output()
            .unwrap();
        // The inner sh sees the preload of a library that is not a real ELF: the loader prints
        // a warning on stderr and carries on, which is all this test needs.
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.trim(),
            format!("{}:/other.so|/tmp/x/lambda.shm", lib.display())
        );
    }
}
