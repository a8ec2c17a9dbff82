//! The `silt` binary as a user meets it: `serve` settings and errors, and the topic commands.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use silt_tests::{Silt, run, silt_command, wait_until};

#[test]
fn topic_commands_create_list_describe_alter_produce_consume_delete() {
    let mut silt = Silt::start(&[]);
    let (code, out, err) = silt.cli(
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("orders") && out.contains("OK"), "{out}");

    let (code, out, _) = silt.cli(&["topic", "create", "orders"], None);
    assert_eq!(code, 1);
    assert!(
        out.contains("already exists"),
        "Kafka codes become sentences: {out}"
    );

    let (code, out, _) = silt.cli(&["topic", "list"], None);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("orders") && l.contains(" 3 ")),
        "{out}"
    );

    let (code, _, err) = silt.cli(
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.local.target.ms=60000",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = silt.cli(
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=forever",
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("retention.ms") && err.contains("-1 (no limit)"),
        "{err}"
    );

    let lines: String = (0..30)
        .map(|i| format!("key{}:value {i}\n", i % 5))
        .collect();
    let (code, _, err) = silt.cli(&["topic", "produce", "orders", "-k", ":"], Some(&lines));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("produced 30 records"), "{err}");

    let (code, out, err) = silt.cli(&["topic", "describe", "orders"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("local.retention.ms") && out.contains("60000"),
        "{out}"
    );
    let watermarks: i64 = out
        .lines()
        .skip_while(|l| !l.contains("HIGH-WATERMARK"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().last()?.parse::<i64>().ok())
        .sum();
    assert_eq!(watermarks, 30, "{out}");

    let (code, out, err) = silt.cli(
        &[
            "topic",
            "consume",
            "orders",
            "--exit-at-end",
            "-f",
            "%k=%v\\n",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    let mut want: Vec<String> = (0..30).map(|i| format!("key{}=value {i}", i % 5)).collect();
    want.sort_unstable();
    assert_eq!(got, want);
    // Same keys land in the same partition (murmur2, as the Java client does).
    let (_, out, _) = silt.cli(
        &[
            "topic",
            "consume",
            "orders",
            "--exit-at-end",
            "-f",
            "%k %p\\n",
        ],
        None,
    );
    let mut partition_of = std::collections::HashMap::new();
    for line in out.lines() {
        let (key, partition) = line.split_once(' ').unwrap();
        assert_eq!(
            *partition_of
                .entry(key.to_string())
                .or_insert(partition.to_string()),
            partition
        );
    }

    let (code, out, _) = silt.cli(
        &[
            "topic", "consume", "orders", "-n", "2", "-o", "1", "-p", "0", "-f", "json",
        ],
        None,
    );
    assert_eq!(code, 0);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["offset"], 1);

    let (code, out, _) = silt.cli(&["topic", "delete", "orders", "missing"], None);
    assert_eq!(code, 1, "one of two failed");
    assert!(
        out.contains("orders") && out.contains("does not exist"),
        "{out}"
    );
    assert_eq!(silt.terminate(), Some(0));
}

#[test]
fn cli_names_an_unreachable_broker() {
    let mut command = silt_command();
    command.args(["topic", "list", "--brokers", "127.0.0.1:1"]);
    let (code, _, err) = run(command, None);
    assert_eq!(code, 1);
    assert!(
        err.contains("127.0.0.1:1") && err.contains("silt serve"),
        "{err}"
    );
}

#[test]
fn bad_settings_are_named_with_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--set", "kafka_adr=127.0.0.1:1"],
            vec![],
            "unknown setting `kafka_adr`",
        ),
        (
            vec!["--set", "auto_create_topics=yes"],
            vec![],
            "true or false",
        ),
        (vec![], vec![("SILT_NODE_ID", "-3")], "node_id"),
        (vec![], vec![("SILT_KAFKA_ADR", "x")], "SILT_KAFKA_ADR"),
        (
            vec!["--archive", "ftp://somewhere"],
            vec![],
            "s3://bucket/prefix",
        ),
    ];
    for (args, env, expected) in cases {
        let mut command = silt_command();
        command.current_dir(dir.path()).arg("serve").args(&args);
        for (k, v) in env {
            command.env(k, v);
        }
        let (code, _, err) = run(command, None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let file = dir.path().join("silt.toml");
    std::fs::write(&file, "data_dir = \"x\"\nsegment_bytes = 12\n").unwrap();
    let mut command = silt_command();
    command.args(["serve", "--config"]).arg(&file);
    let (code, _, err) = run(command, None);
    assert_eq!(code, 2);
    assert!(
        err.contains("segment_bytes")
            && err.contains("silt.toml")
            && err.contains("log_segment_bytes"),
        "{err}"
    );
}

#[test]
fn a_data_directory_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let mut command = silt_command();
    command
        .args([
            "serve",
            "--kafka-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--rpc-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(blocker.join("data"));
    let (code, _, err) = run(command, None);
    assert_eq!(code, 1);
    assert!(err.contains("a-file/data"), "{err}");
}

#[test]
fn a_segment_file_that_is_not_ours_takes_its_partition_offline_not_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut silt = Silt::start_in(&data, &[]);
    let (code, _, err) = silt.cli(&["topic", "create", "t", "-p", "2"], None);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = silt.cli(&["topic", "produce", "t", "-p", "1"], Some("hello\n"));
    assert_eq!(code, 0);
    assert_eq!(silt.terminate(), Some(0));
    let foreign = data.join("topics/t/0/00000000000000000000.log");
    std::fs::write(&foreign, "my shopping list\n").unwrap();
    let mut silt = Silt::start_in(&data, &[]);
    assert!(
        silt.log().contains("not a silt log file")
            && silt.log().contains("t/0/00000000000000000000.log"),
        "{}",
        silt.log()
    );
    let (code, out, _) = silt.cli(&["topic", "consume", "t", "-p", "1", "--exit-at-end"], None);
    assert_eq!(
        (code, out.as_str()),
        (0, "hello\n"),
        "the healthy partition still serves"
    );
    let (code, _, err) = silt.cli(&["topic", "consume", "t", "-p", "0", "--exit-at-end"], None);
    assert_eq!(code, 1);
    assert!(err.contains("storage"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "my shopping list\n",
        "left untouched"
    );
    assert_eq!(silt.terminate(), Some(0));
}

#[test]
fn serve_with_no_flags_uses_silt_data_in_the_working_directory() {
    if std::net::TcpListener::bind("127.0.0.1:9092").is_err()
        || std::net::TcpListener::bind("127.0.0.1:9644").is_err()
    {
        eprintln!("skipped: the default ports 9092/9644 are in use on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut command = silt_command();
    command
        .current_dir(dir.path())
        .arg("serve")
        .env("RUST_LOG", "info");
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    assert!(wait_until(Duration::from_secs(30), || dir
        .path()
        .join("silt-data/node.json")
        .exists()));
    assert!(wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect("127.0.0.1:9092").is_ok()
    }));
    let mut silt_cli = silt_command();
    silt_cli.args(["topic", "create", "defaults"]);
    let (code, _, err) = run(silt_cli, None);
    assert_eq!(code, 0, "{err}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("silt-data"),
        "logs where its data lives: {stderr}"
    );
    assert!(
        dir.path()
            .join("silt-data/topics/defaults/0/clean_shutdown")
            .exists(),
        "closed cleanly"
    );
}
