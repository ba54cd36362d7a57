//! `dlverify lsp` inside a real Neovim, headless: `tests/neovim/diagnostics.lua`
//! opens a spec with a mistake, starts and attaches the server with the
//! client APIs of Neovim 0.7 (Debian 12's package; `vim.lsp.start` is 0.8+,
//! so the script uses `vim.lsp.start_client` and `buf_attach_client`), and
//! writes the diagnostics Neovim ends up holding, then mends the buffer and
//! writes them again. What is checked is what a user sees: Neovim's own
//! conversion of the server's UTF-16 positions to byte columns included.
//!
//! Needs `nvim` on PATH (`apt-get install neovim`, which `.ci/run` does);
//! without it the test says so and passes, so that `cargo test` works with
//! only what Cargo installs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use serde_json::{Value, json};

/// A spec whose mistake (`f16`) comes after non-ASCII text on its line:
/// `dlverify check --format short` puts it at 5:49, the 49th character.
const BROKEN: &str = "\
dim N = 6
input x[N]
param a, b
y[i] = a * (x[i] + x[i+2]) + b     for i in 1..=N-2
check taylor one_sided rate ≈ 2 ± 0.1 precision f16
";

/// The last line, mended; set in the buffer only, never on disk.
const FIXED_LAST_LINE: &str = "check taylor one_sided rate ≈ 2 ± 0.1 precision f64";

/// Neovim's whole run, server start-up and both stages; it takes a fraction
/// of a second, the script itself gives each stage 30 s.
const PATIENCE: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Says on the terminal (past the test harness's capture) why a test did
/// not run.
fn skip(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "tests/neovim.rs: skipped, {why}. To run it: install Neovim 0.7 or later (`apt-get install neovim` on Debian or Ubuntu; `.ci/run` does this), then `cargo test --test neovim`."
    );
}

/// Neovim's version line, `None` (after saying so) where `nvim` is missing.
fn nvim() -> Option<String> {
    match Command::new("nvim").arg("--version").output() {
        Ok(out) if out.status.success() => Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        _ => {
            skip("`nvim` is not on PATH");
            None
        }
    }
}

/// Runs a script of `tests/neovim/` in a headless Neovim, with the
/// variables `vars` and `DLVERIFY_BIN` and `DLVERIFY_OUT` set, and gives
/// the results it wrote. Neovim's state, caches and LSP log go to `dir`,
/// away from the user's.
fn run_script(dir: &TempDir, script: &str, vars: &[(&str, &str)]) -> Value {
    let out = dir.path().join("results.json");
    let home = dir.path().join("xdg");
    let script = root().join("tests/neovim").join(script);
    let mut child = Command::new("nvim")
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {}", script.display()))
        .envs(vars.iter().copied())
        .env("DLVERIFY_BIN", env!("CARGO_BIN_EXE_dlverify"))
        .env("DLVERIFY_OUT", &out)
        .env("XDG_CONFIG_HOME", &home)
        .env("XDG_DATA_HOME", &home)
        .env("XDG_STATE_HOME", &home)
        .env("XDG_CACHE_HOME", &home)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("nvim.stderr")).unwrap())
        .spawn()
        .expect("starts nvim");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nvim did not exit within {PATIENCE:?}\n{}", logs(dir));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| {
        panic!(
            "nvim ({status}) wrote no results to {}: {e}\n{}",
            out.display(),
            logs(dir)
        )
    });
    let results: Value = serde_json::from_str(&text).expect("the results are JSON");
    assert!(
        status.success() && results.get("error").is_none(),
        "the script failed ({status}): {}\nresults: {results:#}\n{}",
        results["error"],
        logs(dir)
    );
    results
}

/// Neovim's standard error and its LSP log (where the server's standard
/// error goes), for failure messages.
fn logs(dir: &TempDir) -> String {
    ["nvim.stderr", "xdg/nvim/lsp.log"]
        .iter()
        .map(|name| {
            let path = dir.path().join(name);
            match std::fs::read_to_string(&path) {
                Ok(log) => format!("{}:\n{log}", path.display()),
                Err(_) => format!("({} is missing)", path.display()),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn diagnostics_appear_at_the_mistake_and_clear_when_mended() {
    let Some(version) = nvim() else { return };
    let dir = TempDir::new("neovim");
    let spec = dir.write("broken.dl", BROKEN);
    let results = run_script(
        &dir,
        "diagnostics.lua",
        &[("DLVERIFY_SPEC", &spec), ("DLVERIFY_FIX", FIXED_LAST_LINE)],
    );
    let context = format!("{version}; results: {results:#}");

    // The file as it is on disk: one diagnostic, the server's, at the
    // mistake. The server says line 4, character 48 (0-based, in UTF-16
    // code units: the 49th character); Neovim turns the character into a
    // byte column of the buffer's line. `≈` is 3 bytes in UTF-8 and `±` 2,
    // both before `f16`: 48 + 2 + 1 = 51, and `f16` ends at byte 54.
    // Neovim 0.7.2 reports exactly these (offset encoding utf-16), and so
    // does a 0.12 development build.
    assert_eq!(results["offset_encoding"], "utf-16", "{context}");
    let broken = results["broken"].as_array().expect("broken diagnostics");
    assert_eq!(broken.len(), 1, "one diagnostic: {context}");
    let d = &broken[0];
    assert_eq!(d["code"], "dl::parse::syntax", "{context}");
    assert_eq!(d["source"], "dlverify", "{context}");
    assert_eq!(d["severity"], 1, "an error: {context}");
    assert_eq!(
        (&d["lnum"], &d["col"]),
        (&json!(4), &json!(51)),
        "start: {context}"
    );
    assert_eq!(
        (&d["end_lnum"], &d["end_col"]),
        (&json!(4), &json!(54)),
        "end: {context}"
    );
    let line = BROKEN.lines().nth(4).unwrap();
    assert_eq!(&line[51..54], "f16", "the byte columns cover `f16`");
    let message = d["message"].as_str().unwrap();
    assert!(
        message.starts_with("expected `f32` or `f64`, found `f16`"),
        "{context}"
    );

    // The last line replaced in the buffer: Neovim sends the change and the
    // diagnostics clear. Neovim also clears them when a server exits, so
    // the script waited for the server's own empty publish, for the
    // buffer's new version, and the server must still be running.
    let published = results["published"].as_array().unwrap();
    assert!(published.len() >= 2, "{context}");
    assert_eq!(published[0]["count"], 1, "on open: {context}");
    let last = published.last().unwrap();
    assert_eq!(last["count"], 0, "after the fix: {context}");
    assert_eq!(last["version"], results["fixed_version"], "{context}");
    assert_eq!(results["fixed"], json!([]), "{context}");
    assert_eq!(results["client_running"], true, "{context}");
}

/// `editors/nvim/dlverify.lua`, loaded as a user's config loads it, in the
/// Neovim at hand: under 0.7 its fallbacks (filetype autocommand,
/// `start_client`), under 0.8+ `vim.filetype.add` and `vim.lsp.start`.
/// Two files of one project get the filetype, the comment syntax, one
/// server between them rooted at the project (the folder with
/// `Cargo.toml`), and the server's diagnostics.
#[test]
fn the_editor_snippet_attaches_one_server_per_project() {
    let Some(version) = nvim() else { return };
    let dir = TempDir::new("neovim-snippet");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("specs")).unwrap();
    std::fs::write(project.join("Cargo.toml"), "").unwrap();
    let spec = dir.write("project/specs/first.dl", BROKEN);
    let spec2 = dir.write("project/second.dl", BROKEN);
    let snippet = root().join("editors/nvim/dlverify.lua");
    let results = run_script(
        &dir,
        "snippet.lua",
        &[
            ("DLVERIFY_SNIPPET", snippet.to_str().unwrap()),
            ("DLVERIFY_SPEC", &spec),
            ("DLVERIFY_SPEC2", &spec2),
        ],
    );
    let context = format!("{version}; results: {results:#}");

    assert_eq!(results["clients"], 1, "one server: {context}");
    let buffers = results["buffers"].as_array().unwrap();
    assert_eq!(buffers.len(), 2, "{context}");
    let mut ids = vec![];
    for (buffer, path) in buffers.iter().zip([&spec, &spec2]) {
        assert_eq!(buffer["name"], path.as_str(), "{context}");
        assert_eq!(buffer["filetype"], "dl", "{context}");
        assert_eq!(buffer["commentstring"], "# %s", "{context}");
        let clients = buffer["clients"].as_array().unwrap();
        assert_eq!(clients.len(), 1, "{path}: {context}");
        assert_eq!(clients[0]["name"], "dlverify", "{context}");
        assert_eq!(
            clients[0]["root_dir"],
            project.to_str().unwrap(),
            "the root is the folder with Cargo.toml: {context}"
        );
        ids.push(clients[0]["id"].clone());
        assert_eq!(
            buffer["diagnostics"],
            json!([{ "lnum": 4, "col": 51, "code": "dl::parse::syntax", "source": "dlverify" }]),
            "{path}: {context}"
        );
    }
    assert_eq!(ids[0], ids[1], "one client for both files: {context}");
}
