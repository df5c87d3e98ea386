//! Isolation between accounts as a property (SPEC §3, docs/RELIABILITY.md):
//! two accounts run random operations at the same time on one server,
//! through the JSON API, the SOAP service and PAINT: ingest (their
//! `external_id`s deliberately the same strings), fetch, mark read,
//! release, queue status, and probes with the other account's batch ids.
//! Each account's answers must be exactly what a model of that account
//! alone predicts (events, order, counts, open batches), a probe with a
//! foreign id must answer exactly as an unknown id does, and no answer to
//! one account may contain an event, event id, batch id or recipient of the
//! other.
//!
//! Seeded: a failure names its seed; `EVENTD_ISOLATION_SEED=… cargo test
//! --test isolation` replays each account's operations (the interleaving of
//! the two accounts varies). `EVENTD_ISOLATION_OPS` sets the operations per
//! account (default 150).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::{spawn_app, Backend, TestApp};
use eventd::soapxml::dom::Element;
use eventd::soapxml::envelope::parse_envelope;
use eventd::soapxml::map::{self, MapValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

both!(two_accounts_never_see_each_other);

const NAMES: [&str; 2] = ["alpha", "bravo"];
/// A third account that only ingests, all along, so that the two share
/// ingest transactions (group commit) with it and with each other.
const NOISE: &str = "charlie";
const TRIGGERS: [&str; 2] = ["OPEN", "CLICK"];
const TNS: &str = "urn:eventd:eventNotification";
const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Ids each account has learnt (event ids, batch ids), for the probes and
/// the final check of every answer.
#[derive(Default)]
struct Known {
    events: [HashSet<String>; 2],
    batches: [HashSet<String>; 2],
}

#[derive(Debug, Clone)]
struct Ev {
    recipient: String,
    trigger: &'static str,
    id: Option<String>,
    /// The open batch holding it.
    held: Option<String>,
}

/// One account as the server should show it.
#[derive(Default)]
struct Model {
    queue: Vec<Ev>,
    /// Open batches: id → (consumer, recipients in order).
    batches: HashMap<String, (String, Vec<String>)>,
    externals: HashSet<String>,
    next: usize,
}

impl Model {
    fn available(&self, triggers: &[&str]) -> impl Iterator<Item = &Ev> {
        let t: Vec<String> = triggers.iter().map(|s| s.to_string()).collect();
        self.queue
            .iter()
            .filter(move |e| e.held.is_none() && (t.is_empty() || t.iter().any(|x| x == e.trigger)))
    }

    fn open_for(&self, consumer: &str) -> Option<String> {
        self.batches
            .iter()
            .find(|(_, (c, _))| c == consumer)
            .map(|(id, _)| id.clone())
    }

    fn close(&mut self, batch: &str, read: bool) -> usize {
        let Some((_, members)) = self.batches.remove(batch) else {
            return 0;
        };
        if read {
            self.queue.retain(|e| e.held.as_deref() != Some(batch));
        } else {
            for e in self.queue.iter_mut().filter(|e| e.held.as_deref() == Some(batch)) {
                e.held = None;
            }
        }
        members.len()
    }

    fn counts(&self) -> (usize, usize) {
        let held = self.queue.iter().filter(|e| e.held.is_some()).count();
        (self.queue.len() - held, held)
    }
}

struct Account {
    me: usize,
    key: String,
    app: Arc<TestApp>,
    known: Arc<Mutex<Known>>,
    model: Model,
    rng: StdRng,
    paint_ctx: Option<String>,
    /// Every answer this account got (checked again at the end against
    /// every id the other account learnt).
    answers: Vec<String>,
    what: String,
}

impl Account {
    fn name(&self) -> &'static str {
        NAMES[self.me]
    }

    /// Checks an answer as it arrives: nothing of the other account's.
    fn record(&mut self, op: &str, text: String) {
        for other in [NAMES[1 - self.me], NOISE] {
            assert!(
                !text.contains(&format!("@{other}.test")) && !text.contains(&format!("{other}-")),
                "{}: {op} answered {} something of {other}: {text}",
                self.what,
                self.name()
            );
        }
        self.answers.push(text);
    }

    fn learn(&self, event_ids: &[String], batch: Option<&str>) {
        let mut k = self.known.lock().unwrap();
        k.events[self.me].extend(event_ids.iter().cloned());
        if let Some(b) = batch {
            k.batches[self.me].insert(b.to_string());
        }
    }

    fn pick_triggers(&mut self) -> Vec<&'static str> {
        match self.rng.gen_range(0..3) {
            0 => vec![],
            1 => vec!["OPEN"],
            _ => vec!["CLICK"],
        }
    }

    async fn step(&mut self, step: usize) {
        self.what = format!("{} step {step}", self.what.split(" step").next().unwrap());
        match self.rng.gen_range(0..100) {
            0..=24 => self.ingest().await,
            25..=39 => self.json_fetch().await,
            40..=49 => self.soap_fetch().await,
            50..=61 => self.close_one(true).await,
            62..=67 => self.close_one(false).await,
            68..=77 => self.paint_get_batch().await,
            78..=85 => self.json_queue().await,
            86..=91 => self.soap_queue().await,
            _ => self.probe_foreign().await,
        }
    }

    async fn ingest(&mut self) {
        let n = self.rng.gen_range(1..=5);
        let mut events = Vec::new();
        let mut fresh = Vec::new();
        let mut dups = 0;
        for _ in 0..n {
            let i = self.model.next;
            self.model.next += 1;
            let trigger = TRIGGERS[self.rng.gen_range(0..2)];
            let recipient = format!("{}-{i}@{}.test", self.name(), self.name());
            let mut e = json!({"trigger": trigger, "recipient": recipient, "data": {"owner": self.name()}});
            // The same external ids in both accounts: each account's own.
            if self.rng.gen_bool(0.5) {
                let x = format!("x{}", self.rng.gen_range(0..40));
                e["external_id"] = json!(x);
                if !self.model.externals.insert(x) {
                    dups += 1;
                    events.push(e);
                    continue;
                }
            }
            events.push(e);
            fresh.push(Ev {
                recipient,
                trigger,
                id: None,
                held: None,
            });
        }
        let r = self.app.post("/v1/events", &self.key, &Value::Array(events)).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        self.record("ingest", text.clone());
        assert_eq!(status, 202, "{}: {text}", self.what);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (v["accepted"].as_u64(), v["duplicates"].as_u64()),
            (Some(fresh.len() as u64), Some(dups)),
            "{}: {text}",
            self.what
        );
        self.model.queue.extend(fresh);
    }

    /// What a fetch by `consumer` must return: its open batch again, or the
    /// oldest available events (then held by the new batch).
    fn expect_fetch(&self, consumer: &str, size: usize, triggers: &[&str]) -> (Option<String>, Vec<String>) {
        match self.model.open_for(consumer) {
            Some(id) => {
                let members = self.model.batches[&id].1.clone();
                (Some(id), members)
            }
            None => (
                None,
                self.model
                    .available(triggers)
                    .take(size)
                    .map(|e| e.recipient.clone())
                    .collect(),
            ),
        }
    }

    /// Applies a fetched batch to the model; checks it is what was expected.
    fn took(
        &mut self,
        consumer: &str,
        batch: Option<String>,
        got: Vec<(String, String)>,
        expected: (Option<String>, Vec<String>),
    ) {
        let recipients: Vec<String> = got.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(recipients, expected.1, "{}: fetched events", self.what);
        let ids: Vec<String> = got.iter().map(|(id, _)| id.clone()).collect();
        self.learn(&ids, batch.as_deref());
        match (batch, expected.0) {
            (None, _) => assert!(got.is_empty(), "{}", self.what),
            (Some(b), Some(again)) => assert_eq!(b, again, "{}: the consumer's open batch again", self.what),
            (Some(b), None) => {
                for (id, r) in &got {
                    let e = self.model.queue.iter_mut().find(|e| &e.recipient == r).unwrap();
                    assert!(
                        e.id.as_ref().is_none_or(|old| old == id),
                        "{}: {r} changed id",
                        self.what
                    );
                    e.id = Some(id.clone());
                    e.held = Some(b.clone());
                }
                self.model.batches.insert(b, (consumer.to_string(), recipients));
            }
        }
    }

    async fn json_fetch(&mut self) {
        let consumer = format!("c{}", self.rng.gen_range(0..3));
        let size = self.rng.gen_range(1..=7);
        let triggers = self.pick_triggers();
        let expected = self.expect_fetch(&consumer, size, &triggers);
        let body = json!({"consumer": consumer, "size": size, "triggers": triggers, "lease_seconds": 600});
        let r = self.app.post("/v1/batches", &self.key, &body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        self.record("fetch", text.clone());
        assert_eq!(status, 200, "{}: {text}", self.what);
        let v: Value = serde_json::from_str(&text).unwrap();
        let got: Vec<(String, String)> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["data"]["owner"], self.name(), "{}", self.what);
                (
                    e["id"].as_str().unwrap().to_string(),
                    e["recipient"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let fresh = expected.0.is_none();
        let batch = v["batch_id"].as_str().map(String::from);
        self.took(&consumer, batch, got, expected);
        if fresh {
            let left = self.model.available(&triggers).count();
            assert_eq!(
                v["remaining"].as_u64(),
                Some(left as u64),
                "{}: remaining: {text}",
                self.what
            );
        }
    }

    async fn soap(&mut self, op: &str, body: String) -> (u16, Element, String) {
        let envelope = format!(
            r#"<?xml version="1.0"?><s:Envelope xmlns:s="{S11}" xmlns:e="{TNS}"><s:Body>{body}</s:Body></s:Envelope>"#
        );
        let r = self
            .app
            .client
            .post(self.app.url("/soap/eventNotification"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .basic_auth(self.name(), Some(&self.key))
            .body(envelope)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.record(op, text.clone());
        let body = parse_envelope(text.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {op}: not an envelope ({e}): {text}", self.what))
            .body;
        (status, body, text)
    }

    async fn soap_fetch(&mut self) {
        let consumer = format!("c{}", self.rng.gen_range(0..3));
        let size = self.rng.gen_range(1..=7);
        let triggers = self.pick_triggers();
        let expected = self.expect_fetch(&consumer, size, &triggers);
        let filter = if triggers.is_empty() {
            String::new()
        } else {
            format!("<e:triggers>{}</e:triggers>", triggers.join(","))
        };
        let (status, resp, text) = self
            .soap(
                "fetchBatch",
                format!("<e:fetchBatch><e:size>{size}</e:size><e:consumer>{consumer}</e:consumer>{filter}<e:leaseSeconds>600</e:leaseSeconds></e:fetchBatch>"),
            )
            .await;
        assert_eq!(status, 200, "{}: {text}", self.what);
        let got: Vec<(String, String)> = resp
            .child("events")
            .map(|evs| {
                evs.children
                    .iter()
                    .map(|ev| {
                        let get = |k: &str| {
                            ev.children
                                .iter()
                                .find(|i| i.child("key").is_some_and(|x| x.text == k))
                                .and_then(|i| i.child("value"))
                                .map(|v| v.text.clone())
                                .unwrap_or_default()
                        };
                        (get("id"), get("recipient"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let fresh = expected.0.is_none();
        let batch = resp.child("batchId").map(|b| b.text.clone());
        let count = resp.child("count").map(|c| c.text.clone());
        assert_eq!(count, Some(got.len().to_string()), "{}: {text}", self.what);
        self.took(&consumer, batch, got, expected);
        if fresh {
            let left = self.model.available(&triggers).count();
            let remaining = resp.child("remaining").map(|c| c.text.clone());
            assert_eq!(remaining, Some(left.to_string()), "{}: remaining: {text}", self.what);
        }
    }

    /// Marks read (or releases) one open batch, over JSON or SOAP.
    async fn close_one(&mut self, read: bool) {
        let mut open: Vec<String> = self.model.batches.keys().cloned().collect();
        open.sort();
        if open.is_empty() {
            return self.json_queue().await;
        }
        let id = open[self.rng.gen_range(0..open.len())].clone();
        let n = self.model.close(&id, read);
        let (verb, field) = if read {
            ("read", "deleted")
        } else {
            ("release", "released")
        };
        if self.rng.gen_bool(0.5) {
            let r = self
                .app
                .post_empty(&format!("/v1/batches/{id}/{verb}"), &self.key)
                .await;
            let status = r.status();
            let text = r.text().await.unwrap();
            self.record(verb, text.clone());
            assert_eq!(status, 200, "{}: {text}", self.what);
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v[field].as_u64(), Some(n as u64), "{}: {text}", self.what);
        } else {
            let (op, field) = if read {
                ("markBatchRead", "deleted")
            } else {
                ("releaseBatch", "released")
            };
            let (status, resp, text) = self
                .soap(op, format!("<e:{op}><e:batchId>{id}</e:batchId></e:{op}>"))
                .await;
            assert_eq!(status, 200, "{}: {text}", self.what);
            assert_eq!(
                resp.child(field).map(|c| c.text.clone()),
                Some(n.to_string()),
                "{}: {text}",
                self.what
            );
        }
    }

    async fn json_queue(&mut self) {
        let r = self.app.get("/v1/queue", &self.key).await;
        let text = r.text().await.unwrap();
        self.record("queue", text.clone());
        let v: Value = serde_json::from_str(&text).unwrap();
        let (pending, held) = self.model.counts();
        assert_eq!(
            (v["pending"].as_u64(), v["in_flight"].as_u64()),
            (Some(pending as u64), Some(held as u64)),
            "{}: {text}",
            self.what
        );
        for t in TRIGGERS {
            let p = self.model.available(&[t]).count() as u64;
            assert_eq!(
                v["triggers"][t]["pending"].as_u64(),
                Some(p),
                "{}: {t}: {text}",
                self.what
            );
        }
        let mut open: Vec<String> = v["open_batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["batch_id"].as_str().unwrap().to_string())
            .collect();
        open.sort();
        let mut expected: Vec<String> = self.model.batches.keys().cloned().collect();
        expected.sort();
        assert_eq!(open, expected, "{}: open batches", self.what);
    }

    async fn soap_queue(&mut self) {
        let (status, resp, text) = self.soap("getQueueStatus", "<e:getQueueStatus/>".into()).await;
        assert_eq!(status, 200, "{}: {text}", self.what);
        let (pending, held) = self.model.counts();
        let field = |n: &str| resp.child(n).map(|c| c.text.clone());
        assert_eq!(
            (field("pending"), field("inFlight")),
            (Some(pending.to_string()), Some(held.to_string())),
            "{}: {text}",
            self.what
        );
        let open = resp.children.iter().filter(|c| c.local() == "openBatch").count();
        assert_eq!(open, self.model.batches.len(), "{}: {text}", self.what);
    }

    async fn paint_call(&mut self, op: &str, ctx: Option<&str>, class: &str, process: &str, data: &str) -> MapValue {
        let ctx = match ctx {
            Some(c) => format!(r#"<contextId x:type="s:string">{c}</contextId>"#),
            None => r#"<contextId x:nil="true"/>"#.to_string(),
        };
        let (entity, process_data) = if class == "bus_facade_context" {
            (
                format!(r#"<entityData x:type="m:Map">{data}</entityData>"#),
                r#"<processData x:nil="true"/>"#.to_string(),
            )
        } else {
            (
                r#"<entityData x:nil="true"/>"#.to_string(),
                format!(r#"<processData x:type="m:Map">{data}</processData>"#),
            )
        };
        let body = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><E:Envelope xmlns:E="{S11}" xmlns:p="urn:localhost-paint" xmlns:x="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:m="http://xml.apache.org/xml-soap" E:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><E:Body><p:handleRequest>{ctx}<className x:type="s:string">{class}</className><processName x:type="s:string">{process}</processName>{entity}{process_data}</p:handleRequest></E:Body></E:Envelope>"#
        );
        let r = self
            .app
            .client
            .post(self.app.url("/soap/paint"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        self.record(op, text.clone());
        assert_eq!(status, 200, "{}: {op}: {text}", self.what);
        let env = parse_envelope(text.as_bytes()).unwrap();
        let v = map::decode(&env.body.children[0]).unwrap();
        assert_eq!(
            v.get("result").and_then(|r| r.as_text()).as_deref(),
            Some("success"),
            "{}: {op}: {text}",
            self.what
        );
        v
    }

    async fn paint_get_batch(&mut self) {
        if self.paint_ctx.is_none() || self.rng.gen_bool(0.1) {
            let item = |k: &str, v: &str| {
                format!(r#"<item><key x:type="s:string">{k}</key><value x:type="s:string">{v}</value></item>"#)
            };
            let login = item("userName", self.name()) + &item("password", &self.key.clone());
            let v = self
                .paint_call("login", None, "bus_facade_context", "login", &login)
                .await;
            let ctx = v
                .get("resultData")
                .and_then(|d| d.get("bus_entity_context"))
                .and_then(|c| c.get("beanId"))
                .and_then(|b| b.as_text())
                .unwrap()
                .into_owned();
            self.paint_ctx = Some(ctx);
        }
        let max = self.rng.gen_range(1..=6);
        let read = self.rng.gen_bool(0.5);
        let triggers = match self.pick_triggers() {
            t if t.is_empty() => vec!["OPEN", "CLICK"],
            t => t,
        };
        let expected: Vec<String> = self
            .model
            .available(&triggers)
            .take(max)
            .map(|e| e.recipient.clone())
            .collect();
        let item = |k: &str, v: &str| {
            format!(r#"<item><key x:type="s:string">{k}</key><value x:type="s:string">{v}</value></item>"#)
        };
        let data = item("notificationTypes", &triggers.join(","))
            + &item("maxNotifications", &max.to_string())
            + &item("markAsReadInd", if read { "Y" } else { "N" });
        let ctx = self.paint_ctx.clone();
        let v = self
            .paint_call(
                "getBatch",
                ctx.as_deref(),
                "bus_facade_eventNotification",
                "getBatch",
                &data,
            )
            .await;
        let b = v
            .get("resultData")
            .and_then(|d| d.get("bus_entity_eventNotificationBatch"))
            .unwrap();
        let count = match b.get("eventCount") {
            Some(MapValue::Int(n)) => *n as usize,
            other => panic!("{}: eventCount {other:?}", self.what),
        };
        let meta: HashMap<String, String> = match b.get("eventMeta") {
            Some(MapValue::Map(items)) => items
                .iter()
                .map(|(k, v)| (k.clone(), v.as_text().unwrap_or_default().into_owned()))
                .collect(),
            other => panic!("{}: eventMeta {other:?}", self.what),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(
                b.get("eventData")
                    .and_then(|d| d.as_text())
                    .unwrap_or_default()
                    .as_bytes(),
            )
            .unwrap();
        let csv_text = String::from_utf8(raw.clone()).unwrap();
        self.record("getBatch (CSV)", csv_text);
        let mut got = Vec::new();
        for row in csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(raw.as_slice())
            .records()
        {
            let row = row.unwrap();
            let header = &meta[&row[0]];
            let col = |name: &str| row[header.split(',').position(|h| h == name).unwrap()].to_string();
            got.push((col("eventId"), col("email")));
        }
        assert_eq!(count, got.len(), "{}", self.what);
        let recipients: Vec<String> = got.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(recipients, expected, "{}: PAINT batch", self.what);
        let ids: Vec<String> = got.iter().map(|(id, _)| id.clone()).collect();
        self.learn(&ids, None);
        if read {
            self.model.queue.retain(|e| !recipients.contains(&e.recipient));
        }
    }

    /// The other account's batch ids answer exactly as unknown ids do.
    async fn probe_foreign(&mut self) {
        let foreign: Vec<String> = {
            let k = self.known.lock().unwrap();
            let mut v: Vec<String> = k.batches[1 - self.me].iter().cloned().collect();
            v.sort();
            v
        };
        if foreign.is_empty() {
            return self.soap_queue().await;
        }
        let theirs = foreign[self.rng.gen_range(0..foreign.len())].clone();
        let unknown = uuid::Uuid::now_v7().to_string();
        let verb = ["read", "release"][self.rng.gen_range(0..2)];
        let mut answers = Vec::new();
        for id in [&theirs, &unknown] {
            let r = self
                .app
                .post_empty(&format!("/v1/batches/{id}/{verb}"), &self.key)
                .await;
            let status = r.status();
            let text = r.text().await.unwrap().replace(id.as_str(), "ID");
            self.record("probe", text.clone());
            answers.push((status, text));
        }
        assert_eq!(answers[0], answers[1], "{}: a foreign batch id over JSON", self.what);
        assert_eq!(answers[0].0, 404, "{}", self.what);
        let op = ["markBatchRead", "releaseBatch"][self.rng.gen_range(0..2)];
        let mut faults = Vec::new();
        for id in [&theirs, &unknown] {
            let (status, _, text) = self
                .soap(op, format!("<e:{op}><e:batchId>{id}</e:batchId></e:{op}>"))
                .await;
            faults.push((status, text.replace(id.as_str(), "ID")));
        }
        assert_eq!(faults[0], faults[1], "{}: a foreign batch id over SOAP", self.what);
    }
}

async fn two_accounts_never_see_each_other(b: Backend) {
    let seed: u64 = std::env::var("EVENTD_ISOLATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let ops: usize = std::env::var("EVENTD_ISOLATION_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let app = Arc::new(spawn_app(b).await);
    let known = Arc::new(Mutex::new(Known::default()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise = {
        let (app, done) = (app.clone(), done.clone());
        let (_, key) = app.create_account(NOISE).await;
        tokio::spawn(async move {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let events: Vec<Value> = (0..1 + n % 7)
                    .map(|i| json!({"trigger": TRIGGERS[i % 2], "recipient": format!("{NOISE}-{n}-{i}@{NOISE}.test"), "external_id": format!("x{}", n % 40)}))
                    .collect();
                n += 1;
                let r = app.post("/v1/events", &key, &Value::Array(events)).await;
                assert_eq!(r.status(), 202);
            }
            n
        })
    };
    let mut tasks = Vec::new();
    for (me, name) in NAMES.iter().enumerate() {
        let (_, key) = app.create_account(name).await;
        let mut acct = Account {
            me,
            key,
            app: app.clone(),
            known: known.clone(),
            model: Model::default(),
            rng: StdRng::seed_from_u64(seed.wrapping_add(me as u64)),
            paint_ctx: None,
            answers: Vec::new(),
            what: format!("{b:?} seed {seed} {name}"),
        };
        tasks.push(tokio::spawn(async move {
            for step in 0..ops {
                acct.step(step).await;
            }
            acct
        }));
    }
    let mut accounts = Vec::new();
    for t in tasks {
        accounts.push(t.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(noise.await.unwrap() > 0);
    // Every answer, against every id the other account ever learnt.
    let k = known.lock().unwrap();
    for a in &accounts {
        let other = 1 - a.me;
        for text in &a.answers {
            for id in k.events[other].iter().chain(&k.batches[other]) {
                assert!(
                    !text.contains(id.as_str()),
                    "{}: an answer holds {id} of the other account: {text}",
                    a.what
                );
            }
        }
    }
    assert!(
        k.events.iter().all(|e| !e.is_empty()) && k.batches.iter().all(|b| !b.is_empty()),
        "both accounts fetched something"
    );
}
