//! `tickwire bench compare` in its quickest form against the engine alone: the peers are
//! looked for in an empty repository and skipped (so neither node nor bun is needed),
//! which the output must say; S1, S3 and S4 run with 20 clients for about a second each.
//! Checks the structure of `compare.json` and of the Markdown section, not the figures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap fails the test

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickwire-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn quick_compare_against_the_engine_alone_writes_json_and_markdown() {
    let dir = temp_dir("compare");
    let empty_repo = dir.join("repo");
    std::fs::create_dir_all(&empty_repo).unwrap();
    let doc = dir.join("benchmarks.md");
    std::fs::write(&doc, "# Benchmarks\n\nHand-written text stays.\n").unwrap();
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_tickwire"))
        .args(["bench", "compare", "--quick", "--no-install"])
        .args(["--scenarios", "s1,s3,s4"])
        .args(["--peers", "bun,node,naive-rust"])
        .arg("--repo")
        .arg(&empty_repo)
        .arg("--out")
        .arg(&out)
        .arg("--doc")
        .arg(&doc)
        .output()
        .expect("tickwire runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{}\n{stderr}", run.status);

    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(j["servers"], serde_json::json!(["tickwire"]));
    assert_eq!(
        j["skipped"].as_array().unwrap().len(),
        3,
        "{}",
        j["skipped"]
    );
    assert_eq!(j["quick"], true);
    assert!(j["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert_eq!(
        j["problems"].as_array().unwrap().len(),
        0,
        "{}",
        j["problems"]
    );

    let s1 = &j["s1"][0];
    assert_eq!(s1["clients"], 20);
    let runs = s1["runs"].as_array().unwrap();
    assert!(!runs.is_empty());
    for r in runs {
        assert_eq!(r["server"], "tickwire");
        assert!(r["deliveries"].as_u64().unwrap() > 0, "{r}");
        assert!(r["server_cpu_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["deliveries_per_cpu_s"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["fast_losses"], 0, "{r}");
        assert!(r["bytes_per_msg"].as_f64().unwrap() > 100.0, "{r}");
        assert!(std::path::Path::new(r["dir"].as_str().unwrap())
            .join("summary.json")
            .exists());
    }
    let s3 = j["s3"].as_array().unwrap();
    assert_eq!(s3.len(), 2, "one run per size");
    for r in s3 {
        assert!(r["rss_before_kib"].as_u64().unwrap() > 0, "{r}");
        assert!(
            r["rss_max_kib"].as_u64() >= r["rss_before_kib"].as_u64(),
            "{r}"
        );
    }
    let s4 = j["s4"].as_array().unwrap();
    assert_eq!(s4.len(), 2, "without and with slow clients");
    assert_eq!(s4[0]["slow_clients"], 0);
    assert_eq!(s4[1]["slow_clients"], 2);
    assert!(s4[1]["hwm_kib"].as_u64().unwrap() > 0);

    let md = std::fs::read_to_string(&doc).unwrap();
    assert!(
        md.starts_with("# Benchmarks\n\nHand-written text stays.\n"),
        "{md}"
    );
    for part in [
        "<!-- compare:begin -->",
        "<!-- compare:end -->",
        "quick (smoke) sizes",
        "### Summary",
        "| scenario | clients | rate (trades/s) | peer | figure | ours | peer | ratio | CPU |",
        "### S1: lossless fan-out, 20 clients on one topic",
        "### S3: memory per idle subscribed connection",
        "### S4:",
        "### Targets",
        "S1 ≥ 3 M frames/s per core",
        "**bun not compared**",
        "**naive-rust not compared**",
    ] {
        assert!(md.contains(part), "{part:?} missing from:\n{md}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
