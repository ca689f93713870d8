//! README.md's API walkthrough, run as written against the real binary: every `sh` block
//! between `<!-- walkthrough:begin -->` and `<!-- walkthrough:end -->`, command by
//! command, in bash. So the README cannot drift from what the server does.
//!
//! - `export NAME=…` lines: `PICLOUD`, `ADMIN` and `HOOK_PORT` come from the test (the
//!   server's address and bootstrap key, a free port); a line commented
//!   `# the "FIELD" from that answer` takes FIELD from the previous command's JSON answer.
//! - Every `curl` answer must be a 2xx (the test's `curl` adds the status to the output).
//! - A `# → {json}` line after a command is the answer's shape: its keys must be in the
//!   answer with values of the same type, strings equal (or, ending in `…`, a prefix).
//! - A command ending in `&` runs in the background until the end; `curl -N` (a stream)
//!   must send its `hello` frame.
//! - The webhook receiver of the walkthrough must print the delivery of the event
//!   published after its trigger was created.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use crate::common::Server;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Defines `curl` to print each answer's status after its body.
const PRELUDE: &str = r#"curl() { command curl -w '\n@@status %{http_code}@@\n' "$@"; }"#;

/// One step of the walkthrough.
#[derive(Debug)]
enum Step {
    /// `export NAME=VALUE`, with the line's comment.
    Export { name: String, comment: String },
    /// A shell command, and the answer shape shown after it.
    Run {
        command: String,
        shape: Option<Value>,
    },
}

/// The walkthrough's steps, in README order.
fn walkthrough() -> Vec<Step> {
    let readme = include_str!("../../../../README.md");
    let begin = readme
        .find("<!-- walkthrough:begin -->")
        .expect("README marks the walkthrough's start");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("README marks the walkthrough's end");
    let mut steps = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in readme[begin..end].lines() {
        if !in_block {
            in_block = line.trim() == "```sh";
            continue;
        }
        if line.trim() == "```" {
            assert!(pending.is_empty(), "unfinished command: {pending}");
            in_block = false;
            continue;
        }
        if pending.is_empty() {
            let trimmed = line.trim();
            if let Some(sample) = trimmed.strip_prefix("# →") {
                let shape = serde_json::from_str(sample.trim())
                    .unwrap_or_else(|e| panic!("README answer is not JSON ({e}): {sample}"));
                match steps.last_mut() {
                    Some(Step::Run { shape: slot, .. }) if slot.is_none() => *slot = Some(shape),
                    _ => panic!("an answer without its command: {line}"),
                }
                continue;
            }
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix("export ") {
                let (assignment, comment) = rest.split_once('#').unwrap_or((rest, ""));
                let name = assignment.split('=').next().unwrap().trim().to_owned();
                steps.push(Step::Export {
                    name,
                    comment: comment.trim().to_owned(),
                });
                continue;
            }
        }
        pending.push_str(line);
        pending.push('\n');
        if !continues(&pending) {
            steps.push(Step::Run {
                command: std::mem::take(&mut pending),
                shape: None,
            });
        }
    }
    steps
}

/// Whether `text` needs another line: it ends in `\` or leaves a quote open.
fn continues(text: &str) -> bool {
    let (mut single, mut double) = (false, false);
    for c in text.chars() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => {}
        }
    }
    single || double || text.trim_end().ends_with('\\')
}

/// Checks that `actual` has the shape `sample` shows (see the module comment).
fn conforms(actual: &Value, sample: &Value, at: &str) -> Result<(), String> {
    match (sample, actual) {
        (Value::Object(fields), Value::Object(got)) => {
            for (key, value) in fields {
                let inner = format!("{at}.{key}");
                let got = got.get(key).ok_or(format!("{inner} is missing"))?;
                conforms(got, value, &inner)?;
            }
            Ok(())
        }
        (Value::Array(items), Value::Array(got)) => match (items.first(), got.first()) {
            (Some(item), Some(first)) => conforms(first, item, &format!("{at}[0]")),
            (Some(_), None) => Err(format!("{at} is empty")),
            (None, _) => Ok(()),
        },
        (Value::String(text), Value::String(got)) => match text.strip_suffix('…') {
            Some(prefix) if got.starts_with(prefix) => Ok(()),
            None if got == text => Ok(()),
            _ => Err(format!("{at} is {got:?}, the README says {text:?}")),
        },
        (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => Ok(()),
        _ => Err(format!("{at} is {actual}, the README shows {sample}")),
    }
}

/// Starts `command` in bash with `env`, output piped. A long-running command is
/// `exec`ed, so that ending the child ends it.
fn bash(command: &str, env: &HashMap<String, String>, long_running: bool) -> Child {
    let exec = if long_running { "exec " } else { "" };
    Command::new("bash")
        .args(["-c", &format!("{PRELUDE}\n{exec}{command}")])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run bash")
}

/// The answers `curl` printed: each body with its status.
fn answers(stdout: &str) -> Vec<(String, u16)> {
    let mut answers = Vec::new();
    let mut rest = stdout;
    while let Some(start) = rest.find("@@status ") {
        let body = rest[..start].trim().to_owned();
        let after = &rest[start + "@@status ".len()..];
        let end = after.find("@@").expect("status marker ends");
        answers.push((body, after[..end].parse().expect("a status")));
        rest = &after[end + 2..];
    }
    answers
}

/// Reads `stream` until a line satisfies `done`, for at most `limit`.
async fn read_until(
    stream: &mut (impl tokio::io::AsyncBufRead + Unpin),
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let mut seen = String::new();
    let reading = async {
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return false;
            }
            seen.push_str(&line);
            if done(&line) {
                return true;
            }
        }
    };
    match tokio::time::timeout(limit, reading).await {
        Ok(true) => Ok(seen),
        _ => Err(seen),
    }
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written() {
    let steps = walkthrough();
    assert!(steps.len() > 20, "the walkthrough was found: {steps:?}");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start(&[
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--webhook-allow-private",
        "true",
    ])
    .await;
    let hook_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env: HashMap<String, String> = HashMap::from([
        ("PICLOUD".into(), format!("http://{}", server.addr)),
        ("ADMIN".into(), server.bootstrap_key().await),
        ("HOOK_PORT".into(), hook_port.to_string()),
    ]);
    let preset: Vec<String> = env.keys().cloned().collect();
    let mut background = Vec::new();
    let mut last_answer = Value::Null;
    let mut published_after_trigger = Vec::new();
    let mut trigger_created = false;

    for step in steps {
        let (command, shape) = match step {
            Step::Export { name, comment } => {
                if preset.contains(&name) {
                    continue;
                }
                let field = comment
                    .strip_prefix("the \"")
                    .and_then(|rest| rest.strip_suffix("\" from that answer"))
                    .unwrap_or_else(|| panic!("where does ${name} come from? '{comment}'"));
                let value = last_answer[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("no \"{field}\" in {last_answer}"));
                env.insert(name, value.to_owned());
                continue;
            }
            Step::Run { command, shape } => (command, shape),
        };
        let trimmed = command.trim_end();
        if let Some(foreground) = trimmed.strip_suffix('&') {
            background.push(bash(foreground, &env, true));
            continue;
        }
        let streams = command.contains("curl -N");
        let mut child = bash(&command, &env, streams);
        if streams {
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let hello = read_until(&mut stdout, Duration::from_secs(10), |line| {
                line.starts_with("event: hello")
            })
            .await;
            assert!(hello.is_ok(), "{command}: no hello frame: {hello:?}");
            continue; // dropping the child ends the stream
        }
        let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{command}: no answer within 30 s"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{command}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answers = answers(&stdout);
        assert!(!answers.is_empty(), "{command}: no answer: {stdout}");
        for (body, status) in &answers {
            assert!((200..300).contains(status), "{command}: {status} {body}");
        }
        last_answer = serde_json::from_str(&answers.last().unwrap().0).unwrap_or(Value::Null);
        if let Some(shape) = shape {
            assert_eq!(answers.len(), 1, "{command}: one answer for its shape");
            if let Err(why) = conforms(&last_answer, &shape, "answer") {
                panic!("{command}: {why}: {stdout}");
            }
        }
        if command.contains("/triggers") {
            trigger_created = true;
        } else if trigger_created && command.contains("/topics/orders/events") {
            published_after_trigger.push(last_answer["id"].as_str().unwrap().to_owned());
        }
    }

    // The receiver printed the delivery of the event published after the trigger.
    assert_eq!(
        published_after_trigger.len(),
        1,
        "{published_after_trigger:?}"
    );
    let event_id = &published_after_trigger[0];
    assert_eq!(background.len(), 1, "the walkthrough starts one receiver");
    let mut receiver = background.pop().unwrap();
    let mut printed = BufReader::new(receiver.stdout.take().unwrap());
    let delivery = read_until(&mut printed, Duration::from_secs(30), |line| {
        line.starts_with("msg_") && line.contains(event_id.as_str())
    })
    .await;
    if delivery.is_err() {
        let _ = receiver.start_kill();
        let mut errors = String::new();
        let _ = receiver
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut errors)
            .await;
        panic!("the receiver never printed {event_id}: {delivery:?} {errors}");
    }
    let _ = receiver.start_kill();
    server.terminate();
}
