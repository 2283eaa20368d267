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
        let req = self.http.get(&url);
        send("GET", url, req).await
    }

    /// POST a JSON body, any status.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let req = self.http.post(&url).json(body);
        send("POST", url, req).await
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

/// Sends a request and reads its answer; errors name the method and URL.
async fn send(
    method: &'static str,
    url: String,
    req: reqwest::RequestBuilder,
) -> Result<Answer, ClientError> {
    let resp = req.send().await.map_err(|source| ClientError::Http {
        method,
        url: url.clone(),
        source,
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};

    async fn server() -> String {
        let app = axum::Router::new()
            .route("/json", get(|| async { r#"{"a":1}"# }))
            .route("/text", get(|| async { "not json" }))
            .route("/echo", post(|body: String| async move { body }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn get_and_post_parse_json_and_name_the_failed_request() {
        let c = Client::new(&server().await).unwrap();
        let a = c.get("/json").await.unwrap();
        assert_eq!((a.status, &a.body), (200, &serde_json::json!({"a": 1})));
        assert_eq!(c.get("/text").await.unwrap().body, Value::Null);
        let echoed = c.post("/echo", &serde_json::json!([1, 2])).await.unwrap();
        assert_eq!(echoed.body, serde_json::json!([1, 2]));
        let missing = c.get_ok("/nowhere").await.unwrap_err();
        assert!(
            matches!(missing, ClientError::Status { status: 404, .. }),
            "{missing}"
        );

        // A port nothing listens on (bound, then released).
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        let e = Client::new(&dead)
            .unwrap()
            .post("/x", &Value::Null)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ClientError::Http { method: "POST", url, .. } if url == &format!("{dead}/x")),
            "{e}"
        );
    }
}
