//! The check of `dashboards/` against [`schema`]: every dashboard parses, has its stable uid,
//! references only the variables it defines and only data sources chosen through them, and
//! uses only metric, label, span and attribute names netmon really exports — read from
//! `schema` (metric and label names as Prometheus-style backends show them, see
//! [`promnames`]), not from a copy. `dashboards/README.md`'s naming table is checked too.
//!
//! Whether every query also returns data with the labels its panel uses is checked against a
//! real backend by `tests/e2e/test_dashboards.py`.

use super::promnames;
use super::schema::{self, ALL_METRICS, Kind};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The dashboards and their uids: a uid is how links and provisioning find a dashboard, so it
/// never changes.
const DASHBOARDS: [(&str, &str); 3] = [
    ("netmon-overview.json", "netmon-overview"),
    ("netmon-topology.json", "netmon-topology"),
    ("netmon-invocations.json", "netmon-invocations"),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

fn load() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Template variables a string references: `$name`, `${name}`, `${name:format}`,
/// `[[name]]`. Grafana's own (`$__range`, `${__field.labels.x}`, ...) and regex groups (`$1`)
/// are not variables.
fn variable_refs(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let word = |from: usize| -> String {
        s[from..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut i = 0;
    while i < b.len() {
        let name = match (b[i], b.get(i + 1)) {
            (b'$', Some(b'{')) => word(i + 2),
            (b'$', _) => word(i + 1),
            (b'[', Some(b'[')) => word(i + 2),
            _ => String::new(),
        };
        if !name.is_empty()
            && !name.starts_with("__")
            && !name.starts_with(|c: char| c.is_ascii_digit())
        {
            out.push(name);
        }
        i += 1;
    }
    out
}

// ------------------------------------------------------------------ PromQL

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num,
    Punct(char),
    Op,
}

fn tokenize(q: &str) -> Vec<Tok> {
    let c: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if ch == '"' || ch == '\'' || ch == '`' {
            let mut s = String::new();
            i += 1;
            while i < c.len() && c[i] != ch {
                if c[i] == '\\' && ch != '`' {
                    i += 1;
                }
                if let Some(x) = c.get(i) {
                    s.push(*x);
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if "(){}[],".contains(ch) {
            out.push(Tok::Punct(ch));
            i += 1;
        } else if "=!~<>".contains(ch) {
            // `=`, `==`, `!=`, `=~`, `!~`, `<=`, `>=`
            i += 1;
            while i < c.len() && "=~".contains(c[i]) {
                i += 1;
            }
            out.push(Tok::Op);
        } else if "+-*/%^@".contains(ch) {
            i += 1;
            out.push(Tok::Op);
        } else {
            panic!("unexpected character {ch:?} in PromQL: {q}");
        }
    }
    out
}

const KEYWORDS: [&str; 13] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
];

/// The names one PromQL expression uses.
#[derive(Debug, Default)]
struct Query {
    /// Metric names, each with the labels its selector matches on.
    selectors: Vec<(String, Vec<String>)>,
    /// Labels the expression refers to outside selectors: grouping, label_replace/label_join
    /// sources.
    labels: Vec<String>,
    /// Labels the expression makes (label_replace/label_join targets).
    made: Vec<String>,
}

/// The top-level arguments of the call whose `(` is at `open`: token ranges.
fn arguments(t: &[Tok], open: usize) -> Vec<(usize, usize)> {
    let mut depth = 0;
    let mut args = Vec::new();
    let mut start = open + 1;
    for (i, tok) in t.iter().enumerate().skip(open) {
        match tok {
            Tok::Punct('(' | '{' | '[') => depth += 1,
            Tok::Punct(')' | '}' | ']') => {
                depth -= 1;
                if depth == 0 {
                    args.push((start, i));
                    return args;
                }
            }
            Tok::Punct(',') if depth == 1 => {
                args.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses");
}

fn string_arg(t: &[Tok], (a, b): (usize, usize)) -> String {
    match &t[a..b] {
        [Tok::Str(s)] => s.clone(),
        other => panic!("expected a string argument, got {other:?}"),
    }
}

/// `name op "value", ...` up to the `}` that closes the `{` at `open`; returns the labels and
/// the index after `}`.
fn matchers(t: &[Tok], open: usize) -> (Vec<(String, String)>, usize) {
    let mut out = Vec::new();
    let mut i = open + 1;
    loop {
        match &t[i..] {
            [Tok::Punct('}'), ..] => return (out, i + 1),
            [Tok::Punct(','), ..] => i += 1,
            [Tok::Ident(l), Tok::Op, Tok::Str(v), ..] => {
                out.push((l.clone(), v.clone()));
                i += 3;
            }
            other => panic!("bad matcher: {:?}", &other[..other.len().min(4)]),
        }
    }
}

fn parse_promql(expr: &str) -> Query {
    // Grafana's interval variables; other variables only appear inside strings.
    let mut e = expr.to_string();
    for v in ["$__rate_interval", "$__interval", "$__range"] {
        e = e.replace(v, "5m");
    }
    let t = tokenize(&e);
    let mut q = Query::default();
    let mut i = 0;
    while i < t.len() {
        match (&t[i], t.get(i + 1)) {
            (Tok::Ident(f), Some(Tok::Punct('('))) => {
                let args = arguments(&t, i + 1);
                match f.as_str() {
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" => {
                        for &(a, b) in &args {
                            match &t[a..b] {
                                [Tok::Ident(l)] => q.labels.push(l.clone()),
                                [] => {}
                                other => panic!("bad label list: {other:?}"),
                            }
                        }
                        i = args.last().map_or(i + 2, |(_, b)| b + 1);
                        continue;
                    }
                    "label_replace" => {
                        q.made.push(string_arg(&t, args[1]));
                        q.labels.push(string_arg(&t, args[3]));
                    }
                    "label_join" => {
                        q.made.push(string_arg(&t, args[1]));
                        q.labels
                            .extend(args[3..].iter().map(|a| string_arg(&t, *a)));
                    }
                    _ => {}
                }
                i += 2;
            }
            (Tok::Ident(m), Some(Tok::Punct('{'))) => {
                let (ms, next) = matchers(&t, i + 1);
                q.selectors
                    .push((m.clone(), ms.into_iter().map(|(l, _)| l).collect()));
                i = next;
            }
            (Tok::Punct('{'), _) => {
                let (ms, next) = matchers(&t, i);
                let names: Vec<String> = ms
                    .iter()
                    .filter(|(l, _)| l == "__name__")
                    .flat_map(|(_, v)| v.split('|').map(str::to_string))
                    .collect();
                assert!(
                    !names.is_empty(),
                    "a selector without a metric name: {expr}"
                );
                let labels: Vec<String> = ms
                    .into_iter()
                    .filter(|(l, _)| l != "__name__")
                    .map(|(l, _)| l)
                    .collect();
                for n in names {
                    q.selectors.push((n, labels.clone()));
                }
                i = next;
            }
            // `sum by (...) (...)`: an aggregation, not a metric.
            (Tok::Ident(_), Some(Tok::Ident(k))) if k == "by" || k == "without" => i += 1,
            (Tok::Ident(m), _) if !KEYWORDS.contains(&m.as_str()) => {
                q.selectors.push((m.clone(), Vec::new()));
                i += 1;
            }
            _ => i += 1,
        }
    }
    q
}

/// `{{label}}` in a legend format.
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}"))
        .map(|(l, _)| l.trim().to_string())
        .collect()
}

/// Series name → the labels its data points can carry, from `schema`.
fn series_labels() -> HashMap<String, BTreeSet<String>> {
    let resource: BTreeSet<String> = schema::RESOURCE_ATTRIBUTES
        .iter()
        .map(|a| promnames::label(a))
        .collect();
    let mut out = HashMap::new();
    for m in ALL_METRICS {
        let mut labels = resource.clone();
        labels.extend(m.attributes.iter().map(|a| promnames::label(a)));
        labels.insert(promnames::label(schema::OVERFLOW_ATTRIBUTE));
        for s in promnames::series(&m) {
            let mut l = labels.clone();
            if m.kind == Kind::Histogram && s.ends_with("_bucket") {
                l.insert("le".into());
            }
            out.insert(s, l);
        }
    }
    out
}

/// Checks one PromQL expression and the labels a panel reads from its result; returns the
/// problems.
fn check_promql(
    what: &str,
    expr: &str,
    extra_labels: &[String],
    known: &HashMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let q = parse_promql(expr);
    let mut available: BTreeSet<String> = q.made.iter().cloned().collect();
    if q.selectors.is_empty() {
        problems.push(format!("{what}: no metric in {expr}"));
    }
    for (metric, labels) in &q.selectors {
        let Some(has) = known.get(metric) else {
            problems.push(format!("{what}: netmon exports no metric named {metric}"));
            continue;
        };
        for l in labels {
            if !has.contains(l) {
                problems.push(format!("{what}: {metric} has no label {l}"));
            }
        }
        available.extend(has.iter().cloned());
    }
    for l in q.labels.iter().chain(extra_labels) {
        if !available.contains(l) {
            problems.push(format!("{what}: no metric of the query has a label {l}"));
        }
    }
    problems
}

// ------------------------------------------------------------------ traces

/// `span.x`, `resource.x` and span names in a TraceQL query.
fn check_traceql(what: &str, q: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let bytes = q.as_bytes();
    for scope in ["span.", "resource."] {
        let mut from = 0;
        while let Some(at) = q[from..].find(scope) {
            let start = from + at;
            from = start + scope.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'.') {
                continue;
            }
            let name: String = q[from..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let list = if scope == "span." {
                schema::SPAN_ATTRIBUTES
            } else {
                schema::RESOURCE_ATTRIBUTES
            };
            if !list.contains(&name.as_str()) {
                problems.push(format!("{what}: netmon sets no {scope}{name}"));
            }
        }
    }
    let mut rest = q;
    while let Some(at) = rest.find("name = \"") {
        rest = &rest[at + 8..];
        let name = rest.split('"').next().unwrap_or_default();
        if !schema::SPAN_NAMES.contains(&name) {
            problems.push(format!("{what}: netmon makes no span named {name:?}"));
        }
    }
    problems
}

// ------------------------------------------------------------------ the checks

#[test]
fn every_dashboard_is_there_with_its_stable_uid() {
    let found: Vec<String> = load().into_iter().map(|(f, _)| f).collect();
    let mut expected: Vec<String> = DASHBOARDS.iter().map(|(f, _)| f.to_string()).collect();
    expected.sort();
    assert_eq!(
        found, expected,
        "dashboards/ holds other files than the known dashboards"
    );
    let mut titles = BTreeSet::new();
    for (file, d) in load() {
        let uid = DASHBOARDS.iter().find(|(f, _)| *f == file).unwrap().1;
        assert_eq!(d["uid"], uid, "{file}: the uid changed");
        assert!(
            uid.len() <= 40,
            "{file}: Grafana uids are at most 40 characters"
        );
        assert!(titles.insert(d["title"].as_str().unwrap().to_string()));
        assert!(
            d["schemaVersion"].as_u64().is_some(),
            "{file}: no schemaVersion"
        );
        assert!(
            d.get("id").is_none_or(Value::is_null),
            "{file}: an instance's id is in it"
        );
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            let id = p["id"].as_u64().unwrap();
            assert!(ids.insert(id), "{file}: panel id {id} twice");
            assert!(
                p["title"].as_str().is_some_and(|t| !t.is_empty()),
                "{file}: panel {id} has no title"
            );
        }
    }
}

#[test]
fn every_variable_referenced_is_defined() {
    for (file, d) in load() {
        let defined: BTreeSet<String> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect();
        let mut all = Vec::new();
        strings(&d, &mut all);
        let mut missing = BTreeSet::new();
        for s in all {
            for r in variable_refs(s) {
                if !defined.contains(&r) {
                    missing.insert(r);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{file} references undefined variables {missing:?}"
        );
        let mut used = BTreeSet::new();
        let mut rest = Vec::new();
        strings(&d["panels"], &mut rest);
        for s in rest {
            used.extend(variable_refs(s));
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            let mut s = Vec::new();
            strings(v, &mut s);
            for x in s {
                used.extend(variable_refs(x));
            }
        }
        let unused: Vec<&String> = defined.difference(&used).collect();
        assert!(
            unused.is_empty(),
            "{file} defines unused variables {unused:?}"
        );
    }
}

/// Data sources are chosen by the user through variables, never an instance's uid.
#[test]
fn data_sources_come_from_variables() {
    for (file, d) in load() {
        let kinds: BTreeMap<String, String> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "datasource")
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["query"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut refs: Vec<&Value> = Vec::new();
        for p in panels(&d) {
            refs.extend(p.get("datasource"));
            for t in p["targets"].as_array().into_iter().flatten() {
                refs.push(&t["datasource"]);
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            refs.extend(v.get("datasource"));
        }
        for r in refs {
            if r.is_null() {
                continue;
            }
            let uid = r["uid"].as_str().unwrap_or_default();
            let kind = r["type"].as_str().unwrap_or_default();
            let var = uid.strip_prefix("${").and_then(|u| u.strip_suffix('}'));
            assert!(
                var.is_some_and(|v| kinds.get(v).is_some_and(|k| k == kind)),
                "{file}: data source {r} is not a {kind} data source variable"
            );
        }
        for p in panels(&d) {
            if let Some(panel_uid) = p["datasource"]["uid"].as_str() {
                for t in p["targets"].as_array().into_iter().flatten() {
                    assert_eq!(
                        t["datasource"]["uid"].as_str(),
                        Some(panel_uid),
                        "{file}: panel {} mixes data sources",
                        p["title"]
                    );
                }
            }
        }
    }
}

#[test]
fn metrics_and_labels_are_the_ones_netmon_exports() {
    let known = series_labels();
    let mut problems = Vec::new();
    let mut queries = 0;
    for (file, d) in load() {
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            // Labels the panel reads from results: table columns it renames.
            let mut columns: Vec<String> = Vec::new();
            for t in p["transformations"].as_array().into_iter().flatten() {
                if t["id"] == "organize" {
                    for k in t["options"]["renameByName"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                    {
                        if k != "Time" && !k.starts_with("Value") {
                            columns.push(k.clone());
                        }
                    }
                }
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                let Some(expr) = t["expr"].as_str() else {
                    continue;
                };
                queries += 1;
                let what = format!("{file} / {title} / {}", t["refId"]);
                let mut read = legend_labels(t["legendFormat"].as_str().unwrap_or_default());
                if p["type"] == "nodeGraph" {
                    read.extend(["id", "source", "target"].map(String::from));
                    let q = parse_promql(expr);
                    for f in ["id", "source", "target"] {
                        assert!(
                            q.made.iter().any(|m| m == f),
                            "{what}: node graph edges need a {f} label"
                        );
                    }
                }
                problems.extend(check_promql(&what, expr, &read, &known));
            }
            if !columns.is_empty() {
                let exprs: Vec<&str> = p["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["expr"].as_str())
                    .collect();
                problems.extend(check_promql(
                    &format!("{file} / {title} columns"),
                    &exprs.join(" or "),
                    &columns,
                    &known,
                ));
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|x| x.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{file}: variable query {q} is not label_values(...)"));
            let (expr, label) = inner.rsplit_once(',').unwrap();
            problems.extend(check_promql(
                &format!("{file} / variable {}", v["name"]),
                expr,
                &[label.trim().to_string()],
                &known,
            ));
        }
    }
    assert!(queries >= 20, "only {queries} queries found");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn span_names_and_attributes_are_the_ones_netmon_exports() {
    let mut problems = Vec::new();
    let mut queries = 0;
    for (file, d) in load() {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let what = format!("{file} / {}", p["title"]);
                match t["datasource"]["type"].as_str() {
                    Some("tempo") => {
                        queries += 1;
                        match t["queryType"].as_str() {
                            Some("traceql") => {
                                problems.extend(check_traceql(&what, t["query"].as_str().unwrap()))
                            }
                            Some("serviceMap") => {}
                            other => problems.push(format!("{what}: Tempo query type {other:?}")),
                        }
                    }
                    Some("jaeger") => {
                        queries += 1;
                        let op = t["operation"].as_str().unwrap_or_default();
                        if !schema::SPAN_NAMES.contains(&op) {
                            problems.push(format!("{what}: netmon makes no span named {op:?}"));
                        }
                        for tag in t["tags"].as_str().unwrap_or_default().split_whitespace() {
                            let key = tag.split('=').next().unwrap_or_default();
                            // Jaeger's `error` tag stands for the span status ERROR.
                            if key != "error" && !schema::SPAN_ATTRIBUTES.contains(&key) {
                                problems
                                    .push(format!("{what}: netmon sets no span attribute {key}"));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(queries >= 5, "only {queries} trace queries found");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// `dashboards/README.md` shows each metric's name as the backends store it.
#[test]
fn readme_names_every_metric_as_backends_store_it() {
    let readme = std::fs::read_to_string(dir().join("README.md")).unwrap();
    for m in ALL_METRICS {
        let row = format!("| `{}` | `{}` |", m.name, promnames::metric(&m));
        assert!(
            readme.contains(&row),
            "dashboards/README.md lacks the row {row}"
        );
    }
}

#[test]
fn the_checker_finds_what_is_wrong() {
    let known = series_labels();
    let q = parse_promql(
        r#"sum by (destination) (label_replace(rate(netflow_bytes_written_total{service_name=~"$service", direction="outgoing"}[$__rate_interval]), "destination", "$1", "dst_domain", "(.+)"))"#,
    );
    assert_eq!(q.selectors[0].0, "netflow_bytes_written_total");
    assert_eq!(q.selectors[0].1, ["service_name", "direction"]);
    assert_eq!(q.made, ["destination"]);
    assert_eq!(q.labels, ["destination", "dst_domain"]);
    let ok = |e: &str, extra: &[&str]| {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        check_promql("t", e, &extra, &known)
    };
    assert!(ok("rate(netflow_bytes_written_total[5m])", &["dst_domain"]).is_empty());
    assert_eq!(ok("rate(netflow_bytes_written[5m])", &[]).len(), 1);
    assert_eq!(
        ok("netflow_bytes_written_total{dst_host=\"x\"}", &[]).len(),
        1
    );
    assert_eq!(
        ok("sum by (rcode) (netflow_bytes_written_total)", &[]).len(),
        1
    );
    assert_eq!(ok("netmon_events_dropped_total", &["error_type"]).len(), 1);
    assert!(ok("sum by (le) (dnsflow_latency_seconds_bucket)", &[]).is_empty());
    assert_eq!(
        ok("sum by (le) (dnsflow_latency_seconds_count)", &[]).len(),
        1
    );
    assert!(
        ok(
            r#"{__name__=~"netflow_bytes_read_total|netflow_bytes_written_total", dst_port="1"}"#,
            &[]
        )
        .is_empty()
    );
    assert_eq!(
        check_traceql("t", r#"{ span.server.address = "x" && name = "connect" }"#).len(),
        0
    );
    assert_eq!(
        check_traceql("t", r#"{ span.http.url = "x" && name = "GET" }"#).len(),
        2
    );
    assert_eq!(
        variable_refs("$a ${b:regex} [[c]] $__range ${__field.labels.x} $1"),
        ["a", "b", "c"]
    );
}
