//! `oect plugins check LIB`: the conformance suite, run in a child process. `LIB` is a
//! native library or a Python plugin file (`.py`, checked through the same kit).
//!
//! The checks exist to find misbehaving extractors, so they must survive one: the child
//! (`oect __check LIB`) loads the library and checks one extractor at a time, sending
//! each extractor's results as they are done (frames of [`crate::exec::protocol`] on a
//! socketpair on its stdin). When the child dies or stops answering, the extractor it was
//! checking gets a failed `contained` item naming the cause (signal, exit status, "no
//! answer within S s"), and a fresh child goes on with the next extractor.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use oect_plugin_api::testkit::{self, CheckOptions};
use serde_json::{json, Value};

use super::{OK, PARTIAL};
use crate::exec::{pool, protocol, worker};
use crate::plugins::python;

/// The child: checks the plugin items (when starting at 0), then each extractor from `from`.
pub fn child(library: &Path, from: usize) -> u8 {
    let Ok(socket) = worker::take_socket() else {
        return worker::EXIT_FATAL as u8;
    };
    worker::die_with_supervisor();
    let mut out = socket;
    let mut send = |v: Value| {
        if protocol::write_frame(&mut out, &v, &[]).is_err() {
            worker::quit(0);
        }
    };
    let loaded: Result<Box<dyn testkit::Target>, String> = if python::is_python(library) {
        python::PyTarget::load(library).map(|t| Box::new(t) as Box<dyn testkit::Target>)
    } else {
        crate::plugins::load_module(library).map(|m| Box::new(m) as Box<dyn testkit::Target>)
    };
    let module = match loaded {
        Ok(m) => m,
        Err(message) => {
            send(json!({"type": "load_failed", "message": message}));
            worker::quit(0);
        }
    };
    let names: Vec<String> = module
        .extractors()
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    send(json!({"type": "extractors", "names": names}));
    let only = |names: Vec<String>| CheckOptions {
        only: Some(names),
        ..CheckOptions::default()
    };
    if from == 0 {
        let report = testkit::check(&*module, &only(Vec::new()));
        send(json!({"type": "report", "index": null, "report": report.to_json()}));
    }
    for (i, name) in names.iter().enumerate().skip(from) {
        send(json!({"type": "checking", "index": i}));
        let report = testkit::check(&*module, &only(vec![name.clone()]));
        send(json!({"type": "report", "index": i, "report": report.to_json()}));
    }
    send(json!({"type": "done"}));
    worker::quit(0)
}

/// The parent: runs children until every extractor is checked, prints the report.
pub fn run(library: &Path, json_out: bool, timeout: f64) -> Result<u8> {
    if !(timeout > 0.0 && timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds, got {timeout}");
    }
    let timeout = Duration::from_secs_f64(timeout);
    let exe = std::env::current_exe().context("locating the oect binary")?;
    let mut plugin = Value::Null;
    let mut items: Vec<Value> = Vec::new();
    let mut names: Option<Vec<String>> = None;
    let mut from = 0;
    loop {
        let (mine, theirs) = UnixStream::pair().context("creating a socketpair")?;
        let mut child = Command::new(&exe)
            .arg("__check")
            .arg(library)
            .args(["--from", &from.to_string()])
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("OECT_SUPERVISOR_PID", std::process::id().to_string())
            .process_group(0)
            .spawn()
            .context("starting the checker process")?;
        let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tail = std::sync::Arc::clone(&tail);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    errln!("plugin output: {line}");
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    t.push(line);
                    if t.len() > 200 {
                        t.remove(0);
                    }
                }
            });
        }
        let (tx, rx) = crossbeam_channel::unbounded::<Value>();
        std::thread::spawn(move || {
            let mut r = BufReader::new(mine);
            while let Ok(Some((v, _))) = protocol::read_frame::<Value>(&mut r) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut current: Option<usize> = None;
        let mut finished = false;
        let mut hung = false;
        loop {
            match rx.recv_timeout(timeout) {
                Ok(v) => match v["type"].as_str().unwrap_or("") {
                    "load_failed" => {
                        let _ = child.wait();
                        bail!("{}", v["message"].as_str().unwrap_or("cannot load"));
                    }
                    "extractors" => {
                        names = serde_json::from_value(v["names"].clone()).ok();
                    }
                    "checking" => current = v["index"].as_u64().map(|i| i as usize),
                    "report" => {
                        let report = &v["report"];
                        let plugin_part = v["index"].is_null();
                        if plugin_part {
                            plugin = report["plugin"].clone();
                        }
                        for item in report["checks"].as_array().into_iter().flatten() {
                            if (item["subject"] == "plugin") == plugin_part {
                                items.push(item.clone());
                            }
                        }
                        current = None;
                    }
                    "done" => {
                        finished = true;
                        break;
                    }
                    _ => {}
                },
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    hung = true;
                    let _ = child.kill();
                    break;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child.wait().context("waiting for the checker process")?;
        if finished {
            break;
        }
        let mut cause = if hung {
            format!("no answer within {} s (--timeout)", timeout.as_secs_f64())
        } else {
            pool::describe(status)
        };
        std::thread::sleep(Duration::from_millis(20));
        let lines = tail.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(last) = pool::last_message(lines.iter()).filter(|_| !hung) {
            cause.push_str(&format!("; its last output: \"{last}\""));
        }
        let Some(all) = names.as_ref() else {
            bail!(
                "{}: loading the library took the checker process down: {cause}",
                library.display()
            );
        };
        let Some(i) = current else {
            bail!(
                "{}: the checker process was lost between extractors: {cause}",
                library.display()
            );
        };
        items.push(json!({
            "subject": all[i],
            "check": "contained",
            "result": "fail",
            "message": format!("the checks took the checker process down: {cause}"),
        }));
        from = i + 1;
        if from >= all.len() {
            break;
        }
    }
    let n = names.as_ref().map_or(0, Vec::len);
    for item in &mut items {
        if item["subject"] == "plugin" && item["check"] == "extractors" {
            if let Some(m) = item["message"].as_str() {
                item["message"] = m.replace(", 0 checked", &format!(", {n} checked")).into();
            }
        }
    }
    let passed = items.iter().all(|i| i["result"] != "fail");
    if json_out {
        let doc = json!({"plugin": plugin, "passed": passed, "checks": items});
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        out!("{}", render(&plugin, &items));
    }
    Ok(if passed { OK } else { PARTIAL })
}

/// The report as a table, like the test kit prints it.
fn render(plugin: &Value, items: &[Value]) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut s = format!(
        "plugin {} {} (oect-plugin-api {})\n",
        text(&plugin["name"]),
        text(&plugin["version"]),
        text(&plugin["api_version"])
    );
    let subject_w = items
        .iter()
        .map(|i| text(&i["subject"]).len())
        .max()
        .unwrap_or(0)
        .max(7);
    let check_w = items
        .iter()
        .map(|i| text(&i["check"]).len())
        .max()
        .unwrap_or(0)
        .max(5);
    s.push_str(&format!(
        "{:<subject_w$}  {:<check_w$}  result  message\n",
        "subject", "check"
    ));
    let count = |r: &str| items.iter().filter(|i| i["result"] == r).count();
    for i in items {
        let result = match i["result"].as_str() {
            Some("fail") => "FAIL".to_string(),
            other => other.unwrap_or("").to_string(),
        };
        s.push_str(&format!(
            "{:<subject_w$}  {:<check_w$}  {result:<6}  {}\n",
            text(&i["subject"]),
            text(&i["check"]),
            text(&i["message"])
        ));
    }
    s.push_str(&format!(
        "{} checks: {} passed, {} failed, {} skipped\n",
        items.len(),
        count("pass"),
        count("fail"),
        count("skip")
    ));
    s
}
