//! The documentation agrees with the program: every option of every
//! `--help` (the top level, `serve`, `request`, `bench`) is in the man page,
//! with its `FASTGATE_*` variable where it has one and its default in its
//! own entry; the man page is clean
//! roff (`mandoc -Tlint`); every option the README or a deploy file
//! names in a `fastgate` command exists in `--help`; and every test the
//! threat model (docs/SECURITY.md) cites as its backing exists.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{bin, require_tool};

const MAN: &str = include_str!("../man/fastgate.1");
const README: &str = include_str!("../README.md");

/// The subcommands whose `--help` the man page must cover (`[]`: the top
/// level).
const COMMANDS: &[&[&str]] = &[&[], &["serve"], &["request"], &["bench"]];

fn help(command: &[&str]) -> String {
    let out = Command::new(bin())
        .args(command)
        .arg("--help")
        .output()
        .expect("run fastgate --help");
    assert!(out.status.success(), "fastgate {command:?} --help failed");
    String::from_utf8(out.stdout).expect("--help is UTF-8")
}

/// The options a `--help` text lists: `-v`, `--verbose`, ... (from the
/// lines that start with a dash, up to the first space after the names).
fn options(help: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in help.lines().map(str::trim_start) {
        if !line.starts_with('-') {
            continue;
        }
        // "-l, --listen <SPEC>  Where ..." / "--cgi-allow-root[=<BOOL>] ..."
        for word in line.split_whitespace().take(3) {
            let word = word.trim_end_matches(',');
            if !word.starts_with('-') {
                break;
            }
            found.insert(option_name(word));
        }
    }
    found
}

/// `--cgi-allow-root[=<BOOL>]` → `--cgi-allow-root`; `--verbose...` →
/// `--verbose`.
fn option_name(word: &str) -> String {
    let dashes = word.len() - word.trim_start_matches('-').len();
    let name: String = word[dashes..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("{}{name}", &word[..dashes])
}

/// How an option is written in roff: every `-` escaped.
fn roff(option: &str) -> String {
    option.replace('-', "\\-")
}

/// The `FASTGATE_*` names a `--help` gives as `[env: NAME=]`.
fn env_names(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split('=').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_option_of_every_help_is_in_the_man_page() {
    let mut missing = Vec::new();
    for command in COMMANDS {
        let text = help(command);
        let found = options(&text);
        assert!(found.contains("--help"), "no options parsed from {text}");
        for option in found {
            if !MAN.contains(&roff(&option)) {
                missing.push(format!("fastgate {} {option}", command.join(" ")));
            }
        }
        for name in env_names(&text) {
            if !MAN.contains(&name) {
                missing.push(format!("{name} (fastgate {})", command.join(" ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "missing from man/fastgate.1: {missing:?}"
    );
}

/// Each option entry of a `--help` text: its long name (or short, when it
/// has none) and its description, wrapped lines joined.
fn entries(help: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let text = line.trim_start();
        if text.starts_with('-') {
            let names: Vec<String> = text
                .split_whitespace()
                .take_while(|w| w.starts_with('-'))
                .map(|w| option_name(w.trim_end_matches(',')))
                .collect();
            let name = names.last().cloned().unwrap_or_default();
            found.push((name, text.to_string()));
        } else if line.starts_with("    ") && !text.is_empty() {
            if let Some((_, desc)) = found.last_mut() {
                desc.push(' ');
                desc.push_str(text);
            }
        } else {
            // A heading, an argument or a blank line ends the entry.
            found.push((String::new(), String::new()));
        }
    }
    found.retain(|(name, _)| !name.is_empty());
    found
}

/// The man page's section `title`, as plain text per `.TP` entry: the
/// entry's tag line and its body, roff escapes and macros removed.
fn man_entries(title: &str) -> Vec<(String, String)> {
    let section = MAN
        .split(&format!(".SH {title}\n"))
        .nth(1)
        .and_then(|s| s.split("\n.SH ").next())
        .unwrap_or_else(|| panic!("no {title} section"));
    section
        .split(".TP\n")
        .skip(1)
        .map(|entry| {
            let plain = plain_roff(entry);
            let tag = plain.lines().next().unwrap_or("").to_string();
            (tag, plain.replace('\n', " "))
        })
        .collect()
}

fn plain_roff(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.split_once(' ') {
            Some((macro_name, rest)) if macro_name.starts_with('.') => rest,
            _ if line.starts_with('.') => continue,
            _ => line,
        };
        let line = line
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fI", "")
            .replace("\\fR", "")
            .replace("\\fP", "")
            .replace('"', "");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn the_man_page_gives_each_default_of_the_help() {
    let sections = [
        (&[][..], "GLOBAL OPTIONS"),
        (&["serve"][..], "SERVE OPTIONS"),
        (&["request"][..], "REQUEST OPTIONS"),
        (&["bench"][..], "BENCH OPTIONS"),
    ];
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (command, title) in sections {
        let man = man_entries(title);
        for (option, desc) in entries(&help(command)) {
            let Some(default) = desc
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.split(']').next())
            else {
                continue;
            };
            checked += 1;
            let first = default.split([' ', ',']).next().unwrap_or(default);
            let entry = man
                .iter()
                .find(|(tag, _)| tag.split([' ', ',', '[', '=']).any(|w| w == option));
            match entry {
                None => wrong.push(format!("{title}: no entry for {option}")),
                Some((_, body)) if !body.contains(&format!("Default: {first}")) => wrong.push(
                    format!("{title}: {option} does not say its default {default:?}"),
                ),
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "man/fastgate.1: {wrong:#?}");
    assert!(checked > 30, "only {checked} defaults found in --help");
}

#[test]
fn the_serve_help_has_the_options_the_man_page_documents() {
    // The other way round, for `serve`: a `.BI \-\-name` entry of SERVE
    // OPTIONS that --help no longer has is a stale man page.
    let known: BTreeSet<String> = COMMANDS.iter().flat_map(|c| options(&help(c))).collect();
    let section = MAN
        .split(".SH SERVE OPTIONS")
        .nth(1)
        .and_then(|s| s.split(".SH ").next())
        .expect("a SERVE OPTIONS section");
    let stale: Vec<String> = section
        .lines()
        .skip_while(|l| !l.starts_with(".TP"))
        .filter(|l| l.starts_with(".B") && l.contains("\\-\\-"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("\\-\\-")))
        .map(|w| option_name(&w.replace("\\-", "-").replace("\\fR", " ")))
        .filter(|o| !known.contains(o))
        .collect();
    assert!(
        stale.is_empty(),
        "in the man page, not in --help: {stale:?}"
    );
}

#[test]
fn the_man_page_is_clean_roff() {
    if !require_tool("mandoc") {
        return;
    }
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/fastgate.1");
    let out = Command::new("mandoc")
        .args(["-Tlint", "-W", "style"])
        .arg(&page)
        .output()
        .expect("run mandoc");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "mandoc -Tlint: {said}"
    );
}

/// The options named in `text`: in inline code that starts with an option
/// (`` `--listen SPEC` ``), and after `fastgate serve|request|bench` in
/// inline code or in a code line.
fn named_options(text: &str) -> BTreeSet<String> {
    let spans = text.split('`').skip(1).step_by(2).map(|s| (s, true));
    let lines = text.lines().map(|l| (l, false));
    let mut found = BTreeSet::new();
    for (span, inline) in spans.chain(lines) {
        let span = span.trim().trim_start_matches('#').trim();
        let command = ["fastgate serve", "fastgate request", "fastgate bench"]
            .iter()
            .find_map(|c| span.find(c).map(|i| &span[i..]));
        let words = match command {
            Some(rest) => rest,
            None if inline && span.starts_with("--") => span,
            None => continue,
        };
        for word in words.split_whitespace() {
            // A shell command ends at a pipe, a comment or the next command.
            if ["|", "#", "&&", ";"].contains(&word) {
                break;
            }
            if word.starts_with("--") && word.len() > 2 {
                found.insert(option_name(word));
            }
        }
    }
    found
}

fn all_help_options() -> BTreeSet<String> {
    COMMANDS.iter().flat_map(|c| options(&help(c))).collect()
}

#[test]
fn every_option_the_readme_names_exists() {
    let known = all_help_options();
    let named = named_options(README);
    assert!(named.contains("--listen"), "parsed: {named:?}");
    let unknown: Vec<&String> = named.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "README.md names options no --help has: {unknown:?}"
    );
}

#[test]
fn every_fastgate_command_in_deploy_files_uses_real_options() {
    let known = all_help_options();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files = vec![root];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).expect("read deploy dir");
            files.extend(entries.map(|e| e.expect("dir entry").path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read deploy file");
        let named = named_options(&text);
        checked += named.len();
        let unknown: Vec<&String> = named.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{} names options no --help has: {unknown:?}",
            path.display()
        );
    }
    assert!(checked > 10, "only {checked} options found in deploy/");
}

const SECURITY: &str = include_str!("../docs/SECURITY.md");

/// Whether a code span reads as a test's name (`a_client_that_leaves`),
/// not an option or a directive with a file before it.
fn is_test_name(code: &str) -> bool {
    code.matches('_').count() >= 2
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The tests docs/SECURITY.md cites, as (file, name): each
/// `tests/FILE.rs::name` or `src/PATH.rs::name`, and the bare names after
/// it on the same line, which are in the same file.
fn cited_tests(doc: &str) -> Vec<(String, String)> {
    let mut cited = Vec::new();
    for line in doc.lines() {
        let mut file: Option<&str> = None;
        for code in line.split('`').skip(1).step_by(2) {
            let split = code.split_once("::").filter(|(p, _)| p.ends_with(".rs"));
            if let Some((path, name)) = split {
                file = Some(path);
                cited.push((path.to_string(), name.to_string()));
            } else if code.ends_with(".rs") {
                file = None;
            } else if let Some(path) = file.filter(|_| is_test_name(code)) {
                cited.push((path.to_string(), code.to_string()));
            }
        }
    }
    cited
}

#[test]
fn every_test_the_security_model_cites_exists() {
    let cited = cited_tests(SECURITY);
    assert!(cited.len() > 40, "only {} tests cited", cited.len());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing: Vec<String> = cited
        .iter()
        .filter(|(path, name)| {
            let source = std::fs::read_to_string(root.join(path)).unwrap_or_default();
            !source.contains(&format!("fn {name}("))
        })
        .map(|(path, name)| format!("{path}::{name}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/SECURITY.md cites tests that do not exist: {missing:?}"
    );
}
