//! A small JSON-over-HTTP client for the node's API.

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{method} {url}: {source}")]
    Http {
        method: &'static str,
        url: String,
        source: reqwest::Error,
    },
    #[error("{method} {url}: answered {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
}

/// A JSON answer with its status.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ClientError::Http {
                method: "BUILD",
                url: base.into(),
                source,
            })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET, any status; the body parsed as JSON (`null` when it is not JSON).
    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                method: "GET",
                url: url.clone(),
                source,
            })?;
        answer("GET", url, resp).await
    }

    /// POST a JSON body, any status.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                method: "POST",
                url: url.clone(),
                source,
            })?;
        answer("POST", url, resp).await
    }

    /// GET that must answer 200.
    pub async fn get_ok(&self, path: &str) -> Result<Value, ClientError> {
        let a = self.get(path).await?;
        if a.status != 200 {
            return Err(ClientError::Status {
                method: "GET",
                url: self.url(path),
                status: a.status,
                body: a.body.to_string(),
            });
        }
        Ok(a.body)
    }
}

async fn answer(
    method: &'static str,
    url: String,
    resp: reqwest::Response,
) -> Result<Answer, ClientError> {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|source| ClientError::Http {
        method,
        url,
        source,
    })?;
    Ok(Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}
