//! Rate limiting: GCRA quotas per client address and route class (README.md, "Rate
//! limits").
//!
//! Without Redis the in-process limiter ([`local`]) decides. With Redis, one Lua script
//! ([`gcra::SCRIPT`]) decides for all replicas in one round trip, against one TAT key
//! per client and class; when Redis errs or is slower than its timeout, the local
//! limiter decides instead (counted in `rate_limit_fallbacks_total`). Refusals are 429
//! problem+json with `Retry-After` and the `RateLimit-*` headers of the IETF draft,
//! which allowed answers carry too. Which requests are exempt, and of which class the others are, is the HTTP layer's
//! to say (`http::rate_limit`).

pub(crate) mod client;
pub(crate) mod gcra;
pub(crate) mod local;

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
pub(crate) use gcra::Decision;
use gcra::Gcra;
use local::LocalClass;

/// A GCRA quota: a sustained rate and the number of requests allowed at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quota {
    pub(crate) per_second: f64,
    pub(crate) burst: u32,
}

/// Rate limiting in force; `None` in [`crate::config::Config::rate_limit`] when switched off.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateLimitConfig {
    pub(crate) read: Quota,
    pub(crate) submit: Quota,
    pub(crate) admin: Quota,
}

/// Default quotas per client address , sized for a public node: an explorer
/// page or a wallet makes a handful of reads at once, an attester submits rarely (a batch
/// route takes up to 1000 attestations in one request), and the registry routes are
/// written a few times per epoch.
pub(crate) const DEFAULT_READ_QUOTA: Quota = Quota {
    per_second: 100.0,
    burst: 200,
};
pub(crate) const DEFAULT_SUBMIT_QUOTA: Quota = Quota {
    per_second: 20.0,
    burst: 40,
};
pub(crate) const DEFAULT_ADMIN_QUOTA: Quota = Quota {
    per_second: 1.0,
    burst: 5,
};
/// The route classes, each with a quota of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    Read,
    Submit,
    Admin,
}

impl Class {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Submit => "submit",
            Class::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

struct ClassLimiter {
    gcra: Gcra,
    local: LocalClass,
}

pub(crate) struct Limiter {
    classes: [ClassLimiter; 3],
    redis: Option<Arc<RedisLink>>,
    trusted: Vec<IpNet>,
    sha: String,
    metrics: Arc<Metrics>,
}

impl Limiter {
    /// The limiter, and a task that keeps the local limiter's memory bounded.
    pub(crate) fn start(
        config: &RateLimitConfig,
        trusted: Vec<IpNet>,
        redis: Option<Arc<RedisLink>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Limiter> {
        let class = |q| {
            let gcra = Gcra::new(q);
            ClassLimiter {
                gcra,
                local: LocalClass::new(gcra),
            }
        };
        let limiter = Arc::new(Limiter {
            classes: [
                class(config.read),
                class(config.submit),
                class(config.admin),
            ],
            redis,
            trusted,
            sha: redis::Script::new(gcra::SCRIPT).get_hash().to_owned(),
            metrics,
        });
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(local::SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(l) = weak.upgrade() else { return };
                let keys: usize = l.classes.iter().map(|c| c.local.sweep()).sum();
                l.metrics.rate_limit_keys.set(keys as i64);
            }
        });
        limiter
    }

    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client::bucket(client::client_ip(peer, headers, &self.trusted))
    }

    /// Decides one request of `class` from `client` (already a bucket).
    pub(crate) async fn decide(&self, class: Class, client: IpAddr) -> Decision {
        let c = &self.classes[class.index()];
        let local = c.local.check(&client);
        let Some(link) = &self.redis else {
            return local;
        };
        let key = link.key(&format!("rl:{}:{client}", class.as_str()));
        let (interval, burst) = (c.gcra.interval_us, c.gcra.burst);
        let sha = self.sha.clone();
        let reply = link
            .call(|mut conn| async move {
                let evalsha = redis::cmd("EVALSHA")
                    .arg(&sha)
                    .arg(1)
                    .arg(&key)
                    .arg(interval)
                    .arg(burst)
                    .query_async::<Vec<i64>>(&mut conn)
                    .await;
                match evalsha {
                    // Redis restarted or flushed its scripts: EVAL sends the body once
                    // and caches it again for the EVALSHAs after it.
                    Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                        redis::cmd("EVAL")
                            .arg(gcra::SCRIPT)
                            .arg(1)
                            .arg(&key)
                            .arg(interval)
                            .arg(burst)
                            .query_async::<Vec<i64>>(&mut conn)
                            .await
                    }
                    other => other,
                }
            })
            .await;
        match reply.map(|r| Decision::from_script(&c.gcra, &r)) {
            Ok(Some(d)) => d,
            Ok(None) => {
                self.metrics.rate_limit_fallback("error");
                local
            }
            Err(e) => {
                self.metrics.rate_limit_fallback(e.reason());
                local
            }
        }
    }
}
