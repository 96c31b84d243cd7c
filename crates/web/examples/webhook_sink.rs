//! A webhook receiver for benches/deliver.sh: `webhook_sink ADDR accept`
//! answers every POST with 200 and counts them (`GET /count` gives
//! `<requests> <first ms> <last ms>`, Unix milliseconds); `webhook_sink ADDR
//! hang` accepts requests and never answers (a receiver that hangs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::{get, post};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    first_ms: AtomicU64,
    last_ms: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(mode)) = (args.next(), args.next()) else {
        eprintln!("usage: webhook_sink ADDR accept|hang");
        std::process::exit(2);
    };
    let counts = Arc::new(Counts::default());
    let hang = mode == "hang";
    let counting = counts.clone();
    let app = Router::new()
        .route(
            "/hook",
            post(move || {
                let counts = counting.clone();
                async move {
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    let now = now_ms();
                    let _ = counts.first_ms.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                    counts.last_ms.store(now, Ordering::Relaxed);
                    counts.requests.fetch_add(1, Ordering::Relaxed);
                    "ok"
                }
            }),
        )
        .route(
            "/count",
            get(move || {
                let counts = counts.clone();
                async move {
                    format!(
                        "{} {} {}\n",
                        counts.requests.load(Ordering::Relaxed),
                        counts.first_ms.load(Ordering::Relaxed),
                        counts.last_ms.load(Ordering::Relaxed)
                    )
                }
            }),
        );
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("webhook_sink: cannot listen on {addr}: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = axum::serve(listener, app).await {
        eprintln!("webhook_sink: {error}");
        std::process::exit(1);
    }
}
