//! `tickwire report` and `tickwire stats` against a running engine: the report's files
//! have the HdrHistogram structure and a plot per stage; the stats view renders.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;
use tickwire_engine::hgrm;
use tickwire_engine::latency::Stage;

fn tickwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tickwire"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_writes_hgrm_files_and_an_html_page_with_a_plot_per_stage() {
    let engine = start(test_config(), sim(2, 2_000));
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    c.send(
        json!({"op":"subscribe","channels":["ticker","trades","book"],"symbols":["sim:BTC-USD"]}),
    )
    .await;
    // Every stage must have been published before the report reads them: each thread
    // hands its figures over once a second, the feed's and the worker's not necessarily
    // in the same snapshot.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        c.recv().await;
        let s = stats(addr).await;
        if Stage::ALL
            .iter()
            .all(|st| s["latency"][st.name()]["count"].as_u64().unwrap_or(0) > 0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every stage published: {}",
            s["latency"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dir = std::env::temp_dir().join(format!("tickwire-report-{}", std::process::id()));
    let url = format!("http://{addr}");
    let out = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            tickwire()
                .args(["report", "--url", &url, "--out"])
                .arg(&dir)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stage in Stage::ALL {
        let text = std::fs::read_to_string(dir.join(format!("{}.hgrm", stage.name()))).unwrap();
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(
            text.contains("#[Mean    =") && text.contains("#[Buckets ="),
            "{text}"
        );
        let rows = hgrm::parse(&text).unwrap().rows;
        assert!(!rows.is_empty(), "{stage:?} has samples");
        assert_eq!(rows.last().unwrap().percentile, 1.0);
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        Stage::ALL.len(),
        "one plot per stage"
    );
    assert!(html.contains("<polyline") && html.contains("99.99%"));
    let stats_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats_json["config"]["workers"], 2);

    // Re-reading the saved files and comparing two runs draws two lines per plot.
    let cmp = dir.join("compare");
    let out = tickwire()
        .args(["report", "--from"])
        .arg(&dir)
        .arg("--compare")
        .arg(&dir)
        .arg("--out")
        .arg(&cmp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(cmp.join("report.html")).unwrap();
    assert_eq!(html.matches("<polyline").count(), 2 * Stage::ALL.len());

    let url = format!("http://{addr}");
    let view = tokio::task::spawn_blocking(move || {
        tickwire()
            .args([
                "stats",
                "--url",
                &url,
                "--count",
                "2",
                "--interval-ms",
                "100",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(view.status.success());
    let screen = String::from_utf8_lossy(&view.stdout);
    assert!(
        screen.contains("tick_to_wire") && screen.contains("sim"),
        "{screen}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    engine.shutdown();
}
