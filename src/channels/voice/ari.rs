//! ARI mode: call control over Asterisk's REST Interface, for any Asterisk
//! 20+. Calls come to `Stasis(otklik)`; for each, the robot answers, makes a
//! mixing bridge and an `externalMedia` channel (AudioSocket over TCP, its
//! UUID in `data`) that connects to this server's AudioSocket listener, and
//! bridges the two, so the call is served by the same `call::run` as in
//! AudioSocket-only mode. Keys come as `ChannelDtmfReceived` and reach the
//! call by its UUID. When the call's conversation ends, a handoff continues
//! the caller into the handoff context (which runs `Queue()` with the
//! queue named in `OTKLIK_QUEUE`), an end hangs the caller up; either way,
//! and on `StasisEnd` or any error, the bridge and the media channel are
//! destroyed. The events' WebSocket reconnects with backoff.

use super::{Outcome, Voice};
use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Our media channels' ids start with this, so their own Stasis events are
/// told apart from callers'.
const MEDIA: &str = "otklik-media-";
/// The longest wait between reconnections to ARI's events.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// One REST request may take this long.
const REQUEST_WAIT: Duration = Duration::from_secs(5);

/// A caller's channel in Stasis and what the robot made for it.
#[derive(Debug, Clone)]
struct Leg {
    caller: String,
    bridge: String,
    media: String,
}

pub struct Ari {
    v: Arc<Voice>,
    http: reqwest::Client,
    /// The REST base, e.g. http://127.0.0.1:8088/ari.
    base: url::Url,
    /// Where Asterisk connects a call's audio (host:port).
    media_addr: String,
    /// Calls by their UUID (the AudioSocket call's, `voice:<uuid>`).
    legs: Mutex<HashMap<String, Leg>>,
}

impl Ari {
    /// `listener`: the AudioSocket listener's own address, used when
    /// `voice.ari_media_addr` does not say how Asterisk reaches it.
    pub fn new(v: Arc<Voice>, listener: SocketAddr) -> Result<Arc<Self>> {
        let base = url::Url::parse(&v.cfg.ari_url).context("voice.ari_url")?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("voice.ari_url {base}: an http:// or https:// address of ARI");
        }
        let media_addr = if v.cfg.ari_media_addr.is_empty() {
            if listener.ip().is_unspecified() {
                bail!(
                    "voice.ari_media_addr: the AudioSocket listener is on {listener}; \
                     say how Asterisk reaches it (host:port)"
                );
            }
            listener.to_string()
        } else {
            v.cfg.ari_media_addr.clone()
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_WAIT)
            .build()
            .context("ARI's HTTP client")?;
        Ok(Arc::new(Self {
            v,
            http,
            base,
            media_addr,
            legs: Mutex::new(HashMap::new()),
        }))
    }

    /// Listens to ARI's events until shutdown, reconnecting with backoff,
    /// and acts on the calls' outcomes.
    pub async fn run(self: Arc<Self>) {
        let mut finished = self.v.on_finish();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((uuid, outcome)) = finished.recv().await {
                let me = me.clone();
                tokio::spawn(async move { me.ended(&uuid, &outcome).await });
            }
        });
        let mut shutdown = self.v.p.shutdown.clone();
        let mut backoff = Duration::from_millis(500);
        loop {
            let t = std::time::Instant::now();
            tokio::select! {
                r = self.clone().events() => match r {
                    Ok(()) => tracing::warn!("voice: ARI closed the events socket"),
                    Err(e) => tracing::warn!("voice: ARI events: {e:#}"),
                },
                _ = shutdown.changed() => return,
            }
            // A connection that lasted resets the wait.
            if t.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_millis(500);
            }
            self.v.p.metrics.ari_connected(false);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {},
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection to ARI's events, until it closes.
    async fn events(self: Arc<Self>) -> Result<()> {
        let mut req = events_url(&self.base, &self.v.cfg.ari_app)
            .as_str()
            .into_client_request()?;
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::header::AUTHORIZATION,
            self.basic().parse()?,
        );
        let (mut sock, _) =
            tokio::time::timeout(REQUEST_WAIT, tokio_tungstenite::connect_async(req))
                .await
                .context("connecting to ARI's events timed out")?
                .context("connecting to ARI's events")?;
        tracing::info!("voice: ARI events connected ({})", self.v.cfg.ari_app);
        self.v.p.metrics.ari_connected(true);
        while let Some(m) = sock.next().await {
            let text = match m? {
                Message::Text(t) => t.to_string(),
                Message::Close(_) => return Ok(()),
                _ => continue,
            };
            let Ok(ev) = serde_json::from_str::<Value>(&text) else {
                tracing::warn!("voice: ARI sent something that is not JSON");
                continue;
            };
            self.clone().event(ev);
        }
        Ok(())
    }

    fn basic(&self) -> String {
        use base64::Engine as _;
        let pair = format!("{}:{}", self.v.cfg.ari_user, self.v.cfg.ari_password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    fn event(self: Arc<Self>, ev: Value) {
        let channel = ev["channel"]["id"].as_str().unwrap_or_default().to_string();
        if channel.is_empty() || channel.starts_with(MEDIA) {
            return;
        }
        match ev["type"].as_str().unwrap_or_default() {
            "StasisStart" => {
                tokio::spawn(async move {
                    if let Err(e) = self.clone().start(&channel).await {
                        tracing::warn!("voice: ARI call {channel}: {e:#}");
                        self.give_up(&channel).await;
                    }
                });
            }
            "ChannelDtmfReceived" => {
                let digit = ev["digit"].as_str().and_then(|d| d.chars().next());
                if let (Some(uuid), Some(k)) = (self.uuid_of(&channel), digit) {
                    self.v.press(&uuid, k);
                }
            }
            "StasisEnd" => {
                if let Some(uuid) = self.uuid_of(&channel) {
                    let leg = self.legs.lock().unwrap().remove(&uuid);
                    if let Some(leg) = leg {
                        tokio::spawn(async move { self.clean(&leg).await });
                    }
                }
            }
            _ => {}
        }
    }

    fn uuid_of(&self, caller: &str) -> Option<String> {
        self.legs
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.caller == caller)
            .map(|(u, _)| u.clone())
    }

    /// Answers a caller and bridges it with a new media channel that
    /// connects to this server over AudioSocket.
    async fn start(self: Arc<Self>, caller: &str) -> Result<()> {
        let uuid = new_uuid();
        let leg = Leg {
            caller: caller.to_string(),
            bridge: format!("otklik-{uuid}"),
            media: format!("{MEDIA}{uuid}"),
        };
        self.legs.lock().unwrap().insert(uuid.clone(), leg.clone());
        self.post(&["channels", caller, "answer"], &[]).await?;
        self.post(
            &["bridges"],
            &[
                ("type", "mixing"),
                ("bridgeId", &leg.bridge),
                ("name", &leg.bridge),
            ],
        )
        .await?;
        self.post(
            &["channels", "externalMedia"],
            &[
                ("channelId", &leg.media),
                ("app", &self.v.cfg.ari_app),
                ("external_host", &self.media_addr),
                ("encapsulation", "audiosocket"),
                ("transport", "tcp"),
                ("connection_type", "client"),
                ("format", "slin"),
                ("direction", "both"),
                ("data", &uuid),
            ],
        )
        .await?;
        self.post(
            &["bridges", &leg.bridge, "addChannel"],
            &[("channel", &format!("{},{}", leg.caller, leg.media))],
        )
        .await?;
        tracing::info!("voice: ARI call {caller} is voice:{uuid}");
        Ok(())
    }

    /// A call could not be set up: nothing of it is left, and the caller
    /// goes to a person rather than to a dead line.
    async fn give_up(&self, caller: &str) {
        let Some(uuid) = self.uuid_of(caller) else {
            return;
        };
        let leg = self.legs.lock().unwrap().remove(&uuid);
        if let Some(leg) = leg {
            self.clean(&leg).await;
            let _ = self.to_queue(&leg.caller).await;
        }
    }

    /// The call's conversation ended: a handoff continues the caller into
    /// the queue's context, an end hangs up; then the rest is destroyed.
    async fn ended(&self, uuid: &str, o: &Outcome) {
        let leg = self.legs.lock().unwrap().remove(uuid);
        let Some(leg) = leg else {
            return;
        };
        let r = match o.outcome.as_str() {
            "handoff" => self.to_queue(&leg.caller).await,
            "end" => self.delete(&["channels", &leg.caller]).await,
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!("voice: ARI call {}: {e:#}", leg.caller);
        }
        self.clean(&leg).await;
    }

    async fn to_queue(&self, caller: &str) -> Result<()> {
        self.post(
            &["channels", caller, "variable"],
            &[("variable", "OTKLIK_QUEUE"), ("value", &self.v.cfg.queue)],
        )
        .await?;
        self.post(
            &["channels", caller, "continue"],
            &[
                ("context", &self.v.cfg.ari_handoff_context),
                ("extension", "s"),
                ("priority", "1"),
            ],
        )
        .await
    }

    /// Destroys the media channel and the bridge (either may be gone).
    async fn clean(&self, leg: &Leg) {
        let _ = self.delete(&["channels", &leg.media]).await;
        let _ = self.delete(&["bridges", &leg.bridge]).await;
    }

    async fn post(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<()> {
        self.request(reqwest::Method::POST, segments, query).await
    }

    async fn delete(&self, segments: &[&str]) -> Result<()> {
        self.request(reqwest::Method::DELETE, segments, &[]).await
    }

    async fn request(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<()> {
        let path = segments.join("/");
        let r = self
            .http
            .request(method.clone(), resource(&self.base, segments))
            .basic_auth(&self.v.cfg.ari_user, Some(&self.v.cfg.ari_password))
            .query(query)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = r.status();
        if !status.is_success() {
            bail!("{method} {path}: ARI answered {status}");
        }
        Ok(())
    }
}

/// ARI's address of a resource, each segment escaped.
fn resource(base: &url::Url, segments: &[&str]) -> url::Url {
    let mut u = base.clone();
    if let Ok(mut p) = u.path_segments_mut() {
        p.pop_if_empty().extend(segments);
    }
    u
}

/// ARI's events WebSocket for the Stasis application `app`.
fn events_url(base: &url::Url, app: &str) -> url::Url {
    let mut u = resource(base, &["events"]);
    let ws = if u.scheme() == "https" { "wss" } else { "ws" };
    // http → ws and https → wss are allowed changes of a special scheme.
    let _ = u.set_scheme(ws);
    u.query_pairs_mut()
        .append_pair("app", app)
        .append_pair("subscribeAll", "false");
    u
}

/// A random (version 4) UUID in its string form: the call's id.
fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    super::audiosocket::uuid_string(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_parse_back() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(super::super::audiosocket::parse_uuid(&u).is_some());
        assert_ne!(u, new_uuid());
    }

    #[test]
    fn ids_are_escaped_in_the_path() {
        let base = url::Url::parse("http://127.0.0.1:8088/ari/").unwrap();
        let u = resource(&base, &["channels", "a/b c", "answer"]);
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8088/ari/channels/a%2Fb%20c/answer"
        );
    }

    #[test]
    fn the_events_socket_is_ws_beside_the_rest_base() {
        let base = url::Url::parse("http://127.0.0.1:8088/ari").unwrap();
        assert_eq!(
            events_url(&base, "otklik app").as_str(),
            "ws://127.0.0.1:8088/ari/events?app=otklik+app&subscribeAll=false"
        );
        let tls = url::Url::parse("https://pbx.example/ari/").unwrap();
        assert_eq!(
            events_url(&tls, "otklik").as_str(),
            "wss://pbx.example/ari/events?app=otklik&subscribeAll=false"
        );
    }
}
