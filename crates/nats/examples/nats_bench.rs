//! Helpers of `benches/nats.sh` (see README "NATS benchmark"):
//!
//! - `bare URL`: a bare async-nats consumer that only fetches and acknowledges
//!   every message of the LIFECYCLE stream (durable consumer `bench-bare`,
//!   the same pull settings as the monitor); prints events/s.
//! - `reset URL`: deletes the monitor's consumer `lifewatch`, so that a
//!   monitor started on a fresh database drains the stream from the start
//!   and `drain` does not see the last run's consumer.
//! - `drain URL`: waits until the monitor's consumer `lifewatch` has
//!   delivered and seen acknowledged every message of LIFECYCLE; prints the
//!   time it took from this command's start and events/s.
//! - `latency URL PROBES INTERVAL_MS`: publishes PROBES failing projects
//!   (requested, provisioning started, provisioning failed, timed now) one every
//!   INTERVAL_MS, and measures from the publish of each failure event to its
//!   `provisioning_failed` incident arriving on INCIDENTS; prints p50/p99.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lifewatch_nats::async_nats::{self, jetstream};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["bare", url] => bare(url).await,
        ["drain", url] => drain(url).await,
        ["reset", url] => reset(url).await,
        ["latency", url, probes, interval] => latency(url, probes.parse()?, interval.parse()?).await,
        _ => {
            Err("usage: nats_bench bare URL | reset URL | drain URL | latency URL PROBES INTERVAL_MS".into())
        }
    }
}

async fn bare(url: &str) -> Result<(), Error> {
    let client = async_nats::connect(url).await?;
    let jetstream = jetstream::new(client.clone());
    let mut stream = jetstream.get_stream("LIFECYCLE").await?;
    let total = stream.info().await?.state.messages;
    let _ = stream.delete_consumer("bench-bare").await;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("bench-bare".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages =
        consumer.stream().max_messages_per_batch(2_000).heartbeat(Duration::from_secs(5)).messages().await?;
    let mut count = 0u64;
    while count < total {
        match messages.next().await {
            Some(Ok(message)) => {
                message.ack().await?;
                count += 1;
            }
            Some(Err(error)) => eprintln!("bare: {error}"),
            None => break,
        }
    }
    client.flush().await?;
    let seconds = started.elapsed().as_secs_f64();
    println!("bare consumer: {count} messages in {seconds:.2}s = {:.0} events/s", count as f64 / seconds);
    Ok(())
}

async fn reset(url: &str) -> Result<(), Error> {
    let client = async_nats::connect(url).await?;
    let stream = jetstream::new(client).get_stream("LIFECYCLE").await?;
    let _ = stream.delete_consumer("lifewatch").await;
    Ok(())
}

async fn drain(url: &str) -> Result<(), Error> {
    let started = Instant::now();
    let client = async_nats::connect(url).await?;
    let jetstream = jetstream::new(client);
    let mut stream = jetstream.get_stream("LIFECYCLE").await?;
    let total = stream.info().await?.state.messages;
    loop {
        if let Ok(mut consumer) = stream.get_consumer::<jetstream::consumer::pull::Config>("lifewatch").await
        {
            let info = consumer.info().await?;
            if info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence >= total {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("lifewatch run: {total} messages in {seconds:.2}s = {:.0} events/s", total as f64 / seconds);
    Ok(())
}

async fn latency(url: &str, probes: usize, interval_ms: u64) -> Result<(), Error> {
    let client = async_nats::connect(url).await?;
    let jetstream = jetstream::new(client.clone());
    let mut incidents = client.subscribe("incidents.provisioning_failed.project.>").await?;
    client.flush().await?;
    // Arrivals are timed by a task of their own, so that they are never
    // held up by the publishing below.
    let run = std::process::id();
    let prefix = format!("prj_probe_{run}_");
    let receiver = tokio::spawn(async move {
        let mut arrived = std::collections::HashMap::new();
        while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(10), incidents.next()).await {
            // The background load raises provisioning_failed incidents too.
            if let Some(project) = message.subject.rsplit('.').next().filter(|id| id.starts_with(&prefix)) {
                arrived.entry(project.to_string()).or_insert_with(Instant::now);
            }
            if arrived.len() >= probes {
                break;
            }
        }
        arrived
    });
    let mut sent = std::collections::HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
    for probe in 0..probes {
        ticker.tick().await;
        let project = format!("prj_probe_{run}_{probe}");
        let now = lifewatch_nats::wall_clock().ok_or("clock")?;
        for (step, event_type, data) in [
            (1, "requested", r#"{"account_id":"acc_probe","region":"probe-region"}"#),
            (2, "provisioning_started", "{}"),
            (3, "provisioning_failed", r#"{"error":"probe"}"#),
        ] {
            let line = format!(
                r#"{{"specversion":"1.0","id":"{project}-{step}","source":"bench","type":"project.{event_type}","subject":"{project}","time":"{now}","data":{data}}}"#
            );
            let subject = format!("lifecycle.project.{project}.{event_type}");
            if step == 3 {
                sent.insert(project.clone(), Instant::now());
            }
            jetstream.publish(subject, line.into()).await?.await?;
        }
    }
    let arrived = receiver.await?;
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(project, sent)| {
            Some(arrived.get(project)?.duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at =
        |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(f64::NAN);
    println!(
        "latency publish -> INCIDENTS over {} probes ({} lost): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        probes - latencies.len(),
        at(0.50),
        at(0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
