//! Properties of simulated streams, checked against a small reference model of SPEC sections 1-3.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use lifewatch_sim::{SimLine, SimStats, SimulateOptions, Simulator, generate};
use serde_json::{Map, Value};

const MIN: i64 = 60_000;

fn run(seed: u64, accounts: u64, faults: bool) -> (Vec<SimLine>, SimStats) {
    let mut sim = Simulator::new(SimulateOptions { seed, accounts, faults, ..SimulateOptions::default() });
    let lines: Vec<SimLine> = sim.by_ref().collect();
    (lines, *sim.stats())
}

/// `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (the only shape the simulator writes) to unix milliseconds.
fn parse_time(s: &str) -> Option<i64> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<u32>().ok();
    let b = s.as_bytes();
    let shape =
        b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':';
    let ms = match (b.len(), b.get(19)) {
        (20, Some(b'Z')) => 0,
        (24, Some(b'.')) if b[23] == b'Z' => n(20, 23)?,
        _ => return None,
    };
    let (y, mo, d, h, mi, se) = (n(0, 4)?, n(5, 7)?, n(8, 10)?, n(11, 13)?, n(14, 16)?, n(17, 19)?);
    // chrono checks the calendar; `from_hms_milli_opt` would also take a leap
    // second, which the simulator never writes, hence `se < 60`.
    let at = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, mo, d)?.and_hms_milli_opt(h, mi, se, ms)?;
    (shape && se < 60).then(|| at.and_utc().timestamp_millis())
}

/// (type, states it may arrive in ("" = missing), target state ("=" = unchanged), data fields:
/// name, kind s/i/b, required).
type Rule = (&'static str, &'static [&'static str], &'static str, &'static [(&'static str, char, bool)]);
const LIVE: &[&str] = &["requested", "provisioning", "active", "suspended", "failed"];
const RULES: &[Rule] = &[
    ("account.created", &[""], "pending", &[("plan", 's', true), ("region", 's', false)]),
    ("account.activated", &["pending"], "active", &[]),
    ("account.onboarding_failed", &["pending"], "failed", &[("reason", 's', true)]),
    ("account.onboarding_retried", &["failed"], "pending", &[]),
    ("account.suspended", &["active"], "suspended", &[("reason", 's', true)]),
    ("account.reinstated", &["suspended"], "active", &[]),
    ("account.plan_changed", &["active", "suspended"], "=", &[("plan", 's', true)]),
    ("account.closed", &["pending", "active", "suspended", "failed"], "closed", &[]),
    ("project.requested", &[""], "requested", &[("account_id", 's', true), ("region", 's', true)]),
    ("project.provisioning_started", &["requested", "failed"], "provisioning", &[("attempt", 'i', false)]),
    ("project.provisioned", &["provisioning"], "active", &[]),
    (
        "project.provisioning_failed",
        &["provisioning"],
        "failed",
        &[("error", 's', true), ("retryable", 'b', false)],
    ),
    ("project.suspended", &["active"], "suspended", &[]),
    ("project.resumed", &["suspended"], "active", &[]),
    (
        "project.quota_exceeded",
        &["requested", "provisioning", "active", "suspended"],
        "=",
        &[("resource", 's', true), ("limit", 'i', true), ("used", 'i', true)],
    ),
    ("project.quota_restored", LIVE, "=", &[("resource", 's', true)]),
    ("project.deletion_requested", LIVE, "deleting", &[]),
    ("project.deleted", &["deleting"], "deleted", &[]),
    (
        "dispute.opened",
        &[""],
        "open",
        &[("account_id", 's', true), ("amount_cents", 'i', true), ("currency", 's', true)],
    ),
    ("dispute.responded", &["open"], "responded", &[]),
    ("dispute.closed", &["open", "responded"], "closed", &[("outcome", 's', true)]),
];

fn deadline(ty: &str, state: &str) -> Option<i64> {
    Some(match (ty, state) {
        ("account", "pending") => 15 * MIN,
        ("account", "failed") => 30 * MIN,
        ("project", "requested") => 5 * MIN,
        ("project", "provisioning") => 15 * MIN,
        ("project", "failed") => 30 * MIN,
        ("project", "deleting") => 60 * MIN,
        ("dispute", "open") => 5 * 24 * 60 * MIN,
        _ => return None,
    })
}

struct Event {
    id: String,
    ty: String,
    subject: String,
    time: i64,
    data: Map<String, Value>,
}

/// Validates one line against SPEC section 1.
fn validate(line: &str) -> Result<Event, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let o = v.as_object().ok_or("not an object")?;
    let s = |k: &str| o.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(format!("bad {k}"));
    if s("specversion")? != "1.0" {
        return Err("specversion".into());
    }
    let (id, ty, subject) = (s("id")?, s("type")?, s("subject")?);
    s("source")?;
    let rule = RULES.iter().find(|r| r.0 == ty).ok_or("unknown type")?;
    let subject_ok =
        subject.len() <= 128 && subject.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    let time = parse_time(s("time")?).ok_or("bad time")?;
    let dct_ok = matches!(o.get("datacontenttype"), None | Some(Value::Null))
        || o.get("datacontenttype") == Some(&Value::from("application/json"));
    let data = match o.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("data not an object".into()),
    };
    if !subject_ok || !dct_ok || id.len() > 256 {
        return Err("bad attribute".into());
    }
    for &(field, kind, required) in rule.3 {
        let ok = match (data.get(field), kind) {
            (None | Some(Value::Null), _) => !required,
            (Some(v), 's') => v.is_string(),
            (Some(v), 'i') => v.is_i64() || v.is_u64(),
            (Some(v), _) => v.is_boolean(),
        };
        if !ok {
            return Err(format!("data.{field}"));
        }
    }
    Ok(Event { id: id.into(), ty: ty.into(), subject: subject.into(), time, data })
}

#[derive(Default, Debug)]
struct Report {
    stuck_states: HashSet<String>,
    stuck: u64,
    illegal: u64,
    invariant: u64,
    account_quota: u64,
    outages: u64,
}

struct Ent<'a> {
    etype: &'a str,
    state: &'static str,
    entered: i64,
    late: bool,
    account: Option<String>,
    region: Option<String>,
}

/// Counts a visit that is past its deadline at `now` (once per visit).
fn late(r: &mut Report, e: &mut Ent, now: i64) {
    if let Some(dl) = deadline(e.etype, e.state)
        && now > e.entered + dl
        && !e.late
    {
        e.late = true;
        r.stuck += 1;
        r.stuck_states.insert(format!("{}.{}", e.etype, e.state));
    }
}

/// Folds the valid events through SPEC sections 2 and 3 and counts the trouble it sees.
fn model(events: &[Event]) -> Report {
    let mut r = Report::default();
    let mut ents: HashMap<&str, Ent> = HashMap::new();
    let (mut plan_max, mut live) = (HashMap::new(), HashMap::<String, u32>::new());
    let mut failing: HashMap<String, HashSet<&str>> = HashMap::new();
    for ev in events {
        let Some(&(_, from, to, _)) = RULES.iter().find(|r| r.0 == ev.ty) else { continue };
        let (etype, name) = ev.ty.split_once('.').unwrap_or_default();
        let cur = ents.get(ev.subject.as_str()).map_or("", |e| e.state);
        if let Some(e) = ents.get_mut(ev.subject.as_str()) {
            late(&mut r, e, ev.time);
        }
        r.illegal += u64::from(!from.contains(&cur));
        if matches!(cur, "closed" | "deleted")
            || (from == [""] && !cur.is_empty())
            || (to == "=" && cur.is_empty())
        {
            continue;
        }
        let field = |k: &str| ev.data.get(k).and_then(Value::as_str).map(str::to_string);
        let e = ents.entry(&ev.subject).or_insert(Ent {
            etype,
            state: "",
            entered: ev.time,
            late: false,
            account: None,
            region: None,
        });
        let was_live = etype == "project" && LIVE.contains(&e.state);
        if to != "=" && to != e.state {
            (e.state, e.entered, e.late) = (to, ev.time, false);
        }
        let is_live = etype == "project" && LIVE.contains(&e.state);
        let requested = ev.ty == "project.requested" && cur.is_empty();
        if requested {
            (e.account, e.region) = (field("account_id"), field("region"));
        }
        let (account, region) = (e.account.clone(), e.region.clone());
        if requested && account.as_ref().and_then(|a| ents.get(a.as_str())).map(|a| a.state) != Some("active")
        {
            r.invariant += 1;
        }
        let mut quota = account.filter(|_| was_live != is_live);
        if let Some(acc) = &quota {
            let count = live.entry(acc.clone()).or_default();
            *count = if is_live { *count + 1 } else { count.saturating_sub(1) };
        }
        if etype == "account" && matches!(name, "created" | "plan_changed") {
            let max = match field("plan").as_deref() {
                Some("free") => 3,
                Some("team") => 20,
                _ => 200,
            };
            plan_max.insert(ev.subject.clone(), max);
            quota = Some(ev.subject.clone());
        }
        if let Some(acc) = quota
            && live.get(&acc).copied().unwrap_or(0) > plan_max.get(&acc).copied().unwrap_or(u32::MAX)
        {
            r.account_quota += 1;
        }
        if let Some(region) = region {
            let set = failing.entry(region).or_default();
            let before = set.len();
            match name {
                "provisioning_failed" => set.insert(&ev.subject),
                "provisioned" | "deletion_requested" | "deleted" => set.remove(ev.subject.as_str()),
                _ => false,
            };
            r.outages += u64::from(before < 5 && set.len() >= 5);
        }
    }
    let now = events.iter().map(|e| e.time).max().unwrap_or(0);
    for e in ents.values_mut() {
        late(&mut r, e, now);
    }
    r
}

/// Checks what every stream must satisfy and returns its valid events in order.
fn check_stream(lines: &[SimLine], stats: &SimStats) -> Vec<Event> {
    assert_eq!(stats.events + stats.duplicates + stats.malformed, lines.len() as u64);
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut events = Vec::new();
    let (mut dups, mut malformed, mut last) = (0, 0, i64::MIN);
    for l in lines {
        let Some(subject) = &l.subject else {
            assert!(validate(&l.line).is_err(), "malformed line passes validation: {}", l.line);
            malformed += 1;
            continue;
        };
        let ev = validate(&l.line).unwrap_or_else(|e| panic!("{e}: {}", l.line));
        assert_eq!(l.id.as_deref(), Some(ev.id.as_str()));
        let (etype, name) = ev.ty.split_once('.').expect("type has a dot");
        assert_eq!(subject, &format!("lifecycle.{etype}.{}.{name}", ev.subject));
        assert!(l.line.len() < 400, "{}", l.line);
        if let Some(first) = seen.get(&ev.id) {
            assert_eq!(*first, l.line, "same id, different line");
            dups += 1;
            continue;
        }
        assert!(ev.time >= last, "time goes back at {}", l.line);
        last = ev.time;
        seen.insert(ev.id.clone(), &l.line);
        events.push(ev);
    }
    assert_eq!((dups, malformed), (stats.duplicates, stats.malformed));
    events
}

#[test]
fn same_seed_same_bytes_and_generate_matches_iterator() {
    let options = SimulateOptions { seed: 7, accounts: 300, faults: true, ..SimulateOptions::default() };
    let (a, sa) = run(7, 300, true);
    let (b, _) = run(7, 300, true);
    assert_eq!(a, b);
    let mut out = Vec::new();
    let stats = generate(options, &mut out).expect("writes to a Vec");
    let joined: String = a.iter().map(|l| format!("{}\n", l.line)).collect();
    assert_eq!(String::from_utf8(out).expect("utf-8"), joined);
    assert_eq!(stats, sa);
    assert!(joined.starts_with(r#"{"specversion":"1.0","id":""#));
    assert!(joined.contains(r#""time":"2026-11-27T00:00:00Z""#));
}

#[test]
fn different_seeds_differ() {
    assert_ne!(run(1, 50, false).0, run(2, 50, false).0);
    assert_ne!(run(1, 50, true).0, run(2, 50, true).0);
    assert!(run(1, 0, true).0.is_empty());
}

#[test]
fn clean_stream_stays_within_every_rule_and_deadline() {
    for seed in [1, 99] {
        let (lines, stats) = run(seed, 3000, false);
        assert_eq!((stats.duplicates, stats.malformed), (0, 0));
        let per_account = stats.events as f64 / 3000.0;
        assert!((9.0..13.0).contains(&per_account), "{per_account} events per account");
        let events = check_stream(&lines, &stats);
        let r = model(&events);
        assert_eq!((r.stuck, r.illegal, r.invariant, r.account_quota, r.outages), (0, 0, 0, 0, 0), "{r:?}");
        let count = |ty: &str| events.iter().filter(|e| e.ty == ty).count();
        assert!(count("dispute.opened") > 50 && count("project.quota_exceeded") > 50);
        assert_eq!(count("project.quota_exceeded"), count("project.quota_restored"));
        for ty in RULES.iter().map(|r| r.0) {
            assert!(count(ty) > 0, "no {ty}");
        }
    }
}

#[test]
fn faulty_stream_has_every_kind_of_trouble() {
    let (lines, stats) = run(5, 4000, true);
    let events = check_stream(&lines, &stats);
    let r = model(&events);
    let states = ["account.pending", "account.failed", "project.requested", "project.provisioning"];
    for s in states.iter().chain(&["project.failed", "project.deleting", "dispute.open"]) {
        assert!(r.stuck_states.contains(*s), "never stuck in {s}: {r:?}");
    }
    assert!(r.illegal > 20 && r.invariant > 5 && r.account_quota > 5, "{r:?}");
    assert!((3..=6).contains(&r.outages), "{r:?}");
    let lines_total = lines.len() as f64;
    for n in [stats.duplicates, stats.malformed] {
        assert!((0.005..0.02).contains(&(n as f64 / lines_total)), "{stats:?}");
    }
    let malformed: Vec<&str> =
        lines.iter().filter(|l| l.subject.is_none()).map(|l| l.line.as_str()).collect();
    for needle in ["[1,2]", "64.0", "yesterday", "\"specversion\":\"0.3\"", "exploded", "text/plain"] {
        assert!(malformed.iter().any(|l| l.contains(needle)), "no malformed line with {needle}");
    }
}
