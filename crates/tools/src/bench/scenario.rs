//! Scenarios and the request makers: every request body and URI is built before the timed
//! phase, so making a request during the run is a few reference-count increments.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use serde::Serialize;

/// What `--scenario` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// GET /health (or `--path` on any HTTP server with `--against`).
    Health,
    /// GET /api/consensus/tipset.
    Tipset,
    /// GET /api/validator/attestation/{id} over ids prepared before the run.
    AttestationGet,
    /// GET /api/validator/attestations?limit=50, first page and cursor pages.
    AttestationList,
    /// POST /api/validator/attestation/submit of pre-signed attestations (201 = success).
    AttestationSubmit,
    /// POST /api/validator/attestation/verify of one pre-signed valid attestation.
    Verify,
    /// 70 % attestation-get, 15 % tipset, 10 % attestation-list, 5 % attestation-submit.
    Mixed,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Health => "health",
            Scenario::Tipset => "tipset",
            Scenario::AttestationGet => "attestation-get",
            Scenario::AttestationList => "attestation-list",
            Scenario::AttestationSubmit => "attestation-submit",
            Scenario::Verify => "verify",
            Scenario::Mixed => "mixed",
        }
    }

    /// Whether `name` is a scenario's name (as `--scenario` and a gates file spell it).
    pub fn named(name: &str) -> bool {
        use clap::ValueEnum;
        Scenario::value_variants().iter().any(|s| s.name() == name)
    }

    /// The request kinds in the order a worker cycles through them.
    pub fn schedule(self) -> Vec<Kind> {
        match self {
            Scenario::Health => vec![Kind::Health],
            Scenario::Tipset => vec![Kind::Tipset],
            Scenario::AttestationGet => vec![Kind::AttestationGet],
            Scenario::AttestationList => vec![Kind::AttestationList],
            Scenario::AttestationSubmit => vec![Kind::AttestationSubmit],
            Scenario::Verify => vec![Kind::Verify],
            Scenario::Mixed => interleave(MIXED_WEIGHTS),
        }
    }
}

/// The `mixed` scenario's weights out of 20 slots: a read-heavy explorer load with a trickle
/// of writes.
pub const MIXED_WEIGHTS: &[(Kind, u32)] = &[
    (Kind::AttestationGet, 14),
    (Kind::Tipset, 3),
    (Kind::AttestationList, 2),
    (Kind::AttestationSubmit, 1),
];

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Health,
    Tipset,
    AttestationGet,
    AttestationList,
    AttestationSubmit,
    Verify,
}

impl Kind {
    /// The status that counts as success: a submit must be stored now (201); a 200 would
    /// mean the attestation was already there, which unique nonces rule out.
    pub fn is_success(self, status: u16) -> bool {
        match self {
            Kind::AttestationSubmit => status == 201,
            _ => status == 200,
        }
    }
}

/// Spreads weighted kinds evenly over one cycle (smooth weighted round robin), so a short
/// run still sees the mix rather than long runs of one kind.
pub fn interleave(weights: &[(Kind, u32)]) -> Vec<Kind> {
    let total: i64 = weights.iter().map(|(_, w)| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total.max(0) as usize);
    for _ in 0..total {
        let mut best = 0;
        for (j, (_, w)) in weights.iter().enumerate() {
            current[j] += i64::from(*w);
            if current[j] > current[best] {
                best = j;
            }
        }
        current[best] -= total;
        out.push(weights[best].0);
    }
    out
}

pub const SUBMIT_PATH: &str = "/api/validator/attestation/submit";
pub const VERIFY_PATH: &str = "/api/validator/attestation/verify";

/// Everything the workers send, shared read-only between them.
#[derive(Debug)]
pub struct Workload {
    /// The `Host` header value.
    pub authority: Option<HeaderValue>,
    pub schedule: Vec<Kind>,
    pub health: Option<Uri>,
    pub tipset: Option<Uri>,
    pub get: Vec<Uri>,
    pub list: Vec<Uri>,
    /// Pre-signed attestation bodies, each sent at most once.
    pub submit: Vec<Bytes>,
    /// The attestation id (digest, hex) of each body in `submit`.
    pub submit_ids: Vec<String>,
    pub verify: Option<Bytes>,
    /// Added to every request (`--header`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub submit_uri: Uri,
    pub verify_uri: Uri,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            authority: None,
            schedule: Vec::new(),
            health: None,
            tipset: None,
            get: Vec::new(),
            list: Vec::new(),
            submit: Vec::new(),
            submit_ids: Vec::new(),
            verify: None,
            headers: Vec::new(),
            submit_uri: Uri::from_static(SUBMIT_PATH),
            verify_uri: Uri::from_static(VERIFY_PATH),
        }
    }
}

impl Workload {
    /// The kind of global request number `seq`.
    pub fn kind_of(&self, seq: u64) -> Kind {
        let n = self.schedule.len().max(1) as u64;
        self.schedule
            .get((seq % n) as usize)
            .copied()
            .unwrap_or(Kind::Health)
    }
}

/// What the recorder needs to know about a request besides its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Tag {
    pub kind: Kind,
    /// Index into [`Workload::submit`] of a submit.
    pub submit: Option<u32>,
}

/// Why a maker could not produce a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// This worker's share of pre-signed attestations is used up.
    Submits,
    /// The workload lacks the data for this kind (a bug in preparation).
    Missing(Kind),
}

/// One worker's request maker. Pools of URIs are walked round-robin from an offset that
/// differs per worker; pre-signed bodies come from a slice owned by this worker alone.
pub struct Maker {
    work: Arc<Workload>,
    get_next: usize,
    list_next: usize,
    submit_next: usize,
    submit_end: usize,
}

impl Maker {
    /// `worker` of `workers` gets the pre-signed bodies `submits.0..submits.1`.
    pub fn new(
        work: Arc<Workload>,
        worker: usize,
        workers: usize,
        submits: (usize, usize),
    ) -> Maker {
        let workers = workers.max(1);
        let get_next = work.get.len() * worker / workers;
        let list_next = work.list.len() * worker / workers;
        Maker {
            work,
            get_next,
            list_next,
            submit_next: submits.0,
            submit_end: submits.1,
        }
    }

    /// The request of global sequence number `seq` (which picks its kind).
    pub fn make(&mut self, seq: u64) -> Result<(Request<Full<Bytes>>, Tag), Exhausted> {
        let kind = self.work.kind_of(seq);
        let tag = Tag { kind, submit: None };
        let w = &self.work;
        let get = |uri: &Option<Uri>| {
            uri.as_ref()
                .map(|u| (build(Method::GET, u, w, None), tag))
                .ok_or(Exhausted::Missing(kind))
        };
        match kind {
            Kind::Health => get(&w.health),
            Kind::Tipset => get(&w.tipset),
            Kind::AttestationGet => {
                let uri = pick(&w.get, &mut self.get_next).ok_or(Exhausted::Missing(kind))?;
                Ok((build(Method::GET, uri, w, None), tag))
            }
            Kind::AttestationList => {
                let uri = pick(&w.list, &mut self.list_next).ok_or(Exhausted::Missing(kind))?;
                Ok((build(Method::GET, uri, w, None), tag))
            }
            Kind::AttestationSubmit => {
                if self.submit_next >= self.submit_end {
                    return Err(Exhausted::Submits);
                }
                let i = self.submit_next;
                let body = w.submit.get(i).ok_or(Exhausted::Submits)?.clone();
                self.submit_next += 1;
                Ok((
                    build(Method::POST, &w.submit_uri, w, Some(body)),
                    Tag {
                        kind,
                        submit: Some(i as u32),
                    },
                ))
            }
            Kind::Verify => {
                let body = w.verify.clone().ok_or(Exhausted::Missing(kind))?;
                Ok((build(Method::POST, &w.verify_uri, w, Some(body)), tag))
            }
        }
    }
}

fn pick<'a>(pool: &'a [Uri], next: &mut usize) -> Option<&'a Uri> {
    if pool.is_empty() {
        return None;
    }
    let i = *next % pool.len();
    *next = i + 1;
    pool.get(i)
}

fn build(method: Method, uri: &Uri, w: &Workload, body: Option<Bytes>) -> Request<Full<Bytes>> {
    let post = body.is_some();
    let mut req = Request::new(Full::new(body.unwrap_or_default()));
    *req.method_mut() = method;
    *req.uri_mut() = uri.clone();
    let h = req.headers_mut();
    if let Some(host) = &w.authority {
        h.insert(HOST, host.clone());
    }
    if post {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in &w.headers {
        h.insert(name.clone(), value.clone());
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_schedule_has_the_documented_weights() {
        let s = Scenario::Mixed.schedule();
        assert_eq!(s.len(), 20);
        for (kind, w) in MIXED_WEIGHTS {
            assert_eq!(s.iter().filter(|k| *k == kind).count(), *w as usize);
        }
        // Spread out: no kind other than the dominant one appears twice in a row.
        for pair in s.windows(2) {
            if pair[0] == pair[1] {
                assert_eq!(pair[0], Kind::AttestationGet);
            }
        }
    }

    #[test]
    fn scenario_names_are_the_command_line_values() {
        use clap::ValueEnum;
        for s in Scenario::value_variants() {
            let value = s.to_possible_value().unwrap();
            assert_eq!(value.get_name(), s.name());
            assert!(Scenario::named(s.name()));
        }
        assert!(!Scenario::named("healthz"));
    }

    #[test]
    fn submit_success_is_201_only() {
        assert!(Kind::AttestationSubmit.is_success(201));
        assert!(!Kind::AttestationSubmit.is_success(200));
        assert!(Kind::Health.is_success(200));
        assert!(!Kind::Health.is_success(503));
    }

    #[test]
    fn maker_uses_each_presigned_body_once_and_then_stops() {
        let work = Arc::new(Workload {
            schedule: vec![Kind::AttestationSubmit],
            submit: (0..4)
                .map(|i| Bytes::from(format!("{{\"n\":{i}}}")))
                .collect(),
            submit_ids: (0..4).map(|i| i.to_string()).collect(),
            ..Default::default()
        });
        let mut m = Maker::new(work, 1, 2, (2, 4));
        let (req, tag) = m.make(0).unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(tag.submit, Some(2));
        assert_eq!(m.make(1).unwrap().1.submit, Some(3));
        assert_eq!(m.make(2).unwrap_err(), Exhausted::Submits);
    }

    #[test]
    fn maker_cycles_over_the_id_pool() {
        let work = Arc::new(Workload {
            schedule: vec![Kind::AttestationGet],
            get: ["/a/1", "/a/2", "/a/3"]
                .iter()
                .map(|s| Uri::from_static(s))
                .collect(),
            ..Default::default()
        });
        let mut m = Maker::new(work, 0, 1, (0, 0));
        let paths: Vec<String> = (0..4)
            .map(|i| m.make(i).unwrap().0.uri().to_string())
            .collect();
        assert_eq!(paths, ["/a/1", "/a/2", "/a/3", "/a/1"]);
    }
}
