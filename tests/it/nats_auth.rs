//! Authentication and TLS of the live monitor against a real `nats-server`
//! (started by each test on a free loopback port with a configuration file,
//! stopped by its pid): an nkey seed file, and mutual TLS with certificates
//! made by the `openssl` command-line tool. User/password and token are in
//! `nats_live.rs` (`authentication_user_password_token_and_refusal`).
//!
//! A credentials (`.creds`) file: the test makes an operator, an account
//! with JetStream and a user with the `nkeys` crate, signs their JWTs as
//! `nsc` does, and runs the server in operator mode with a memory resolver.
//!
//! A TLS handshake the server or the client refuses fails at once: the
//! monitor does not retry it like a server not listening yet (the log has
//! no "cannot connect to NATS yet").

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::nats_support::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// A user nkey pair made for these tests only (with the `nkeys` crate 0.4.5,
/// `KeyPair::new_user()`): the server trusts its public key.
const USER_SEED: &str = "SUAEXD6Z6KNUJ63NGVHKEW37QNNJ2EM6IYCHJYOPMHCONHG4KHYIZ4CI6A";
const USER_PUBLIC_KEY: &str = "UDUZKHESKPA73CDFX4DYEFLWSJYSSTKWGGDR3XKJYEMHEQ5FAGMHHT3M";
/// Another valid user seed, whose public key the server does not know.
const OTHER_SEED: &str = "SUAO62G2SCMII6HEWIAGYMVUMEMAHFPE4UIGIO6PEQ4MHZCJUQTDL72FY4";

fn fixture() -> PathBuf {
    repo_root().join("fixtures/provisioning_failed.jsonl")
}

/// A `nats-server` with JetStream and the configuration file `text`
/// (written into `dir`, which must outlive the server).
fn server_with_config(dir: &Path, name: &str, text: &str) -> NatsServer {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the server configuration");
    NatsServer::start(&["-c", path.to_str().expect("a UTF-8 path")])
}

/// A monitor that must be refused.
struct Refused {
    monitor: Monitor,
    db: PathBuf,
    started: Instant,
}

impl Refused {
    /// Starts `lifewatch run` with a fresh database `db`.
    fn start(url: &str, db: PathBuf, config: &Path, extra: &[&str]) -> Refused {
        let started = Instant::now();
        let monitor = Monitor::start(url, &db, config, extra);
        Refused { monitor, db, started }
    }

    /// Waits for it to exit by itself, checks its exit code and that it
    /// stored nothing, and returns its log.
    fn exit_code(self, expected: i32) -> String {
        // The first connection is retried for 30 s unless the failure is known to be final.
        let (status, log) = self.monitor.wait_exit(Duration::from_secs(120));
        eprintln!("{} refused in {:?} with {status:?}", self.db.display(), self.started.elapsed());
        assert_eq!(status.code(), Some(expected), "the monitor must fail with exit {expected}: {log}");
        assert!(
            db_summary(&self.db).is_none_or(|summary| summary.events == 0),
            "a refused monitor stores nothing"
        );
        log
    }
}

#[test]
fn authentication_nkey_seed_file_and_refusal() {
    let dir = TempDir::new("nkey");
    let server = server_with_config(
        dir.path(),
        "nats-server.conf",
        &format!("authorization {{\n  users = [\n    {{ nkey: \"{USER_PUBLIC_KEY}\" }}\n  ]\n}}\n"),
    );
    let seed_file = dir.path().join("user.nk");
    std::fs::write(&seed_file, format!("# lifewatch test user\n{USER_SEED}\n")).expect("write the seed");
    let other_seed_file = dir.path().join("other.nk");
    std::fs::write(&other_seed_file, format!("{OTHER_SEED}\n")).expect("write the other seed");
    let seed_flag = ["--nkey-seed-file", seed_file.to_str().expect("a UTF-8 path")];

    // `publish` with the flag; the monitor with the configuration key.
    let fixture = fixture();
    let report = publish(&server.url(), &[&fixture], &seed_flag);
    assert!(report.contains("17 published"), "{report}");
    assert!(!report.contains(USER_SEED), "the seed leaked into publish's output: {report}");
    let plain_config = write_config(dir.path(), &[], "report_interval = \"1s\"\n");
    let events = accepted_by_replay(&[&fixture], &plain_config);
    let keyed_dir = TempDir::new("nkey-config");
    let keyed_config = write_config(
        keyed_dir.path(),
        &[],
        &format!("report_interval = \"1s\"\nnkey_seed_file = {:?}\n", seed_file.to_str().unwrap()),
    );
    let db = dir.path().join("nkey.db");
    let monitor = Monitor::start(&server.url(), &db, &keyed_config, &[]);
    wait_until_processed(&db, events, &monitor);
    let log = monitor.log_text();
    let status = monitor.terminate();
    assert!(status.success(), "clean shutdown exits 0, got {status:?}");
    assert!(log.contains("connected to NATS"), "{log}");
    assert!(!log.contains(USER_SEED), "the seed leaked into the log: {log}");

    // The flag form in the monitor too, on a fresh database: it reads the stream again.
    let db = dir.path().join("nkey-flag.db");
    let monitor = Monitor::start(&server.url(), &db, &plain_config, &seed_flag);
    wait_until_processed(&db, events, &monitor);
    let log = monitor.log_text();
    assert!(monitor.terminate().success());
    assert!(!log.contains(USER_SEED), "the seed leaked into the log: {log}");

    // Refusals, started together: a valid seed of a user the server does
    // not know, no credentials at all, and a seed file that holds no seed
    // (a configuration error, exit 2, before any connection).
    let other_flag = ["--nkey-seed-file", other_seed_file.to_str().expect("a UTF-8 path")];
    let empty_seed_file = dir.path().join("empty.nk");
    std::fs::write(&empty_seed_file, "# nothing here\n\n").expect("write the empty seed file");
    let empty_flag = ["--nkey-seed-file", empty_seed_file.to_str().expect("a UTF-8 path")];
    let other = Refused::start(&server.url(), dir.path().join("other.db"), &plain_config, &other_flag);
    let anonymous = Refused::start(&server.url(), dir.path().join("anonymous.db"), &plain_config, &[]);
    let empty = Refused::start(&server.url(), dir.path().join("empty.db"), &plain_config, &empty_flag);

    let log = other.exit_code(1);
    assert!(log.contains("refused the credentials"), "a clear message: {log}");
    assert!(!log.contains(OTHER_SEED), "the seed must not be printed: {log}");
    let log = anonymous.exit_code(1);
    assert!(log.contains("refused the credentials"), "a clear message: {log}");
    let log = empty.exit_code(2);
    assert!(log.contains("holds no nkey seed"), "a clear message: {log}");
}

/// PEM files of a test certificate authority, a server certificate for
/// 127.0.0.1 and localhost, and a client certificate, all signed by the CA.
struct Certificates {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = lifewatch test

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command-line tool is needed to make test certificates");
    assert!(output.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// Makes the certificates in `dir` with `openssl` (P-256 keys).
fn make_certificates(dir: &Path) -> Certificates {
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG).expect("write the openssl configuration");
    let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509", "-config", "openssl.cnf", "-extensions", "ca_ext"][..],
            &new_key,
            &["-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "3650", "-subj", "/CN=lifewatch test CA"],
        ]
        .concat(),
    );
    for (name, subject, extensions, serial) in [
        ("server", "/CN=127.0.0.1", "server_ext", "2"),
        ("client", "/CN=lifewatch monitor", "client_ext", "3"),
    ] {
        let (key, csr, cert) = (format!("{name}-key.pem"), format!("{name}.csr"), format!("{name}.pem"));
        openssl(
            dir,
            &[
                &["req", "-new", "-config", "openssl.cnf"][..],
                &new_key,
                &["-keyout", &key, "-out", &csr, "-subj", subject],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-set_serial",
                serial,
                "-days",
                "3650",
                "-sha256",
                "-extfile",
                "openssl.cnf",
                "-extensions",
                extensions,
                "-out",
                &cert,
            ],
        );
    }
    Certificates {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
    }
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn mutual_tls_and_refusal_without_client_certificate() {
    let dir = TempDir::new("tls");
    let certs = make_certificates(dir.path());
    let server = server_with_config(
        dir.path(),
        "nats-server.conf",
        &format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  timeout: 10\n}}\n",
            utf8(&certs.server_cert),
            utf8(&certs.server_key),
            utf8(&certs.ca)
        ),
    );
    let tls_url = format!("tls://127.0.0.1:{}", server.port);
    let tls_flags = [
        "--tls-ca",
        utf8(&certs.ca),
        "--tls-cert",
        utf8(&certs.client_cert),
        "--tls-key",
        utf8(&certs.client_key),
    ];

    // `publish` over a `tls://` URL; the monitor over `nats://` (the server
    // requires TLS, and the client upgrades the connection).
    let fixture = fixture();
    let report = publish(&tls_url, &[&fixture], &tls_flags);
    assert!(report.contains("17 published"), "{report}");
    let config = write_config(dir.path(), &[], "report_interval = \"1s\"\n");
    let events = accepted_by_replay(&[&fixture], &config);
    let db = dir.path().join("tls-flags.db");
    let monitor = Monitor::start(&server.url(), &db, &config, &tls_flags);
    wait_until_processed(&db, events, &monitor);
    let log = monitor.log_text();
    assert!(monitor.terminate().success());
    assert!(log.contains("connected to NATS"), "{log}");

    // The same with the configuration keys, on a fresh database.
    let keyed_dir = TempDir::new("tls-config");
    let keyed_config = write_config(
        keyed_dir.path(),
        &[],
        &format!(
            "report_interval = \"1s\"\ntls_required = true\ntls_ca = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n",
            utf8(&certs.ca),
            utf8(&certs.client_cert),
            utf8(&certs.client_key)
        ),
    );
    let db = dir.path().join("tls-config.db");
    let monitor = Monitor::start(&server.url(), &db, &keyed_config, &[]);
    wait_until_processed(&db, events, &monitor);
    assert!(monitor.terminate().success());

    // Refusals: trusting the server but presenting no client certificate,
    // so the server refuses; and a client certificate without the CA, so
    // the client does not trust the server. Neither is retried.
    let no_client_cert = Refused::start(
        &tls_url,
        dir.path().join("no-client-cert.db"),
        &config,
        &["--tls-ca", utf8(&certs.ca)],
    );
    let untrusted = Refused::start(&tls_url, dir.path().join("untrusted.db"), &config, &tls_flags[2..]);
    for (refused, cause) in [(no_client_cert, "certificaterequired"), (untrusted, "unknownissuer")] {
        let log = refused.exit_code(1);
        let error = log.lines().rfind(|line| line.starts_with("lifewatch: error: ")).unwrap_or_default();
        assert!(error.contains(&format!("cannot connect to NATS at {tls_url}")), "a clear message: {log}");
        assert!(error.to_lowercase().contains(cause), "the cause is named ({cause}): {log}");
        assert!(!log.contains("cannot connect to NATS yet"), "a refused handshake is not retried: {log}");
        assert_eq!(error.to_lowercase().matches(cause).count(), 1, "the cause is named once: {error}");
    }
}

/// A NATS JWT (v2) with `claims` about `subject`, signed by `issuer`, as
/// `nsc` makes them.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = json!({
        "jti": format!("{name}-{subject}"),
        "iat": 1_700_000_000,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let signature = issuer.sign(signed.as_bytes()).expect("sign a JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A user JWT of `account` and the user's seed, in the `.creds` format of `nsc`.
fn creds_file(account: &KeyPair) -> (String, String) {
    let user = KeyPair::new_user();
    let user_jwt = jwt(
        account,
        &user.public_key(),
        "lifewatch",
        json!({"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
    );
    let seed = user.seed().expect("the user seed");
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    );
    (text, seed)
}

#[test]
fn authentication_credentials_file_and_refusal() {
    let dir = TempDir::new("creds");
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let operator_jwt =
        jwt(&operator, &operator.public_key(), "lifewatch-test", json!({"type": "operator", "version": 2}));
    // JetStream is on for an account whose storage limits are not zero.
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "cloud",
        json!({
            "type": "account",
            "version": 2,
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
                "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
            },
            "default_permissions": {"pub": {}, "sub": {}}
        }),
    );
    // JetStream in operator mode needs a system account.
    let system = KeyPair::new_account();
    let system_jwt = jwt(&operator, &system.public_key(), "SYS", json!({"type": "account", "version": 2}));
    let server = server_with_config(
        dir.path(),
        "nats-server.conf",
        &format!(
            "operator: {operator_jwt:?}\nsystem_account: {}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {}: {system_jwt:?}\n  {}: {account_jwt:?}\n}}\n",
            system.public_key(),
            system.public_key(),
            account.public_key()
        ),
    );
    let (text, seed) = creds_file(&account);
    let creds = dir.path().join("lifewatch.creds");
    std::fs::write(&creds, text).expect("write the credentials file");
    let creds_flag = ["--creds", utf8(&creds)];

    // `publish` with the flag; the monitor with the configuration key.
    let fixture = fixture();
    let report = publish(&server.url(), &[&fixture], &creds_flag);
    assert!(report.contains("17 published"), "{report}");
    assert!(!report.contains(&seed), "the seed leaked into publish's output: {report}");
    let plain_config = write_config(dir.path(), &[], "report_interval = \"1s\"\n");
    let events = accepted_by_replay(&[&fixture], &plain_config);
    let keyed_dir = TempDir::new("creds-config");
    let keyed_config = write_config(
        keyed_dir.path(),
        &[],
        &format!("report_interval = \"1s\"\ncredentials = {:?}\n", utf8(&creds)),
    );
    let db = dir.path().join("creds.db");
    let monitor = Monitor::start(&server.url(), &db, &keyed_config, &[]);
    wait_until_processed(&db, events, &monitor);
    let log = monitor.log_text();
    assert!(monitor.terminate().success(), "clean shutdown exits 0");
    assert!(log.contains("connected to NATS"), "{log}");
    assert!(!log.contains(&seed), "the seed leaked into the log: {log}");

    // Refusals: a user of an account the server does not know, and a
    // credentials file that does not exist (a configuration error).
    let (stranger, stranger_seed) = creds_file(&KeyPair::new_account());
    let stranger_creds = dir.path().join("stranger.creds");
    std::fs::write(&stranger_creds, stranger).expect("write the other credentials file");
    let unknown = Refused::start(
        &server.url(),
        dir.path().join("unknown.db"),
        &plain_config,
        &["--creds", utf8(&stranger_creds)],
    );
    let missing_path = dir.path().join("missing.creds");
    let missing = Refused::start(
        &server.url(),
        dir.path().join("missing.db"),
        &plain_config,
        &["--creds", utf8(&missing_path)],
    );
    let log = unknown.exit_code(1);
    assert!(log.contains("refused the credentials"), "a clear message: {log}");
    assert!(!log.contains(&stranger_seed), "the seed must not be printed: {log}");
    let log = missing.exit_code(2);
    assert!(log.contains("cannot read") && log.contains("missing.creds"), "the file is named: {log}");
    assert!(log.contains("No such file"), "the cause is named: {log}");
}

/// Credentials written into the server URL (`nats://user:password@host`, as
/// the nats CLI and nats-py take them) are used, and never appear in any log
/// line at any level, in either log format: they are taken out of the URL
/// before anything (async-nats' own logs included) sees it.
#[test]
fn url_credentials_are_used_and_never_logged() {
    const MARKER: &str = "Url-Pa55-7f3c91e2-marker";
    let fixture = fixture();
    let dir = TempDir::new("url-credentials");
    let server = NatsServer::start(&["--user", "urluser", "--pass", MARKER]);
    let url = format!("nats://urluser:{MARKER}@127.0.0.1:{}", server.port);
    let config = write_config(dir.path(), &[], "report_interval = \"1s\"\n");
    let events = accepted_by_replay(&[&fixture], &config);

    for format in ["human", "json"] {
        // `publish` has one log format (human); it runs once per round all the same.
        let output = lifewatch()
            .arg("publish")
            .arg(&fixture)
            .args(["--nats", &url])
            .env("RUST_LOG", "trace")
            .output()
            .expect("run lifewatch publish");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "publish with URL credentials failed: {stderr}");
        assert!(stderr.contains("17 published"), "{stderr}");
        assert!(!stderr.contains(MARKER) && !stdout.contains(MARKER), "the password leaked: {stderr}");

        let db = dir.path().join(format!("url-{format}.db"));
        let log_path = dir.path().join(format!("url-{format}.log"));
        let log_file = std::fs::File::create(&log_path).expect("monitor log");
        let out_path = dir.path().join(format!("url-{format}.out"));
        let out_file = std::fs::File::create(&out_path).expect("monitor output");
        let mut child = lifewatch()
            .args(["run", "--nats", &url, "--log-format", format, "--db"])
            .arg(&db)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "trace")
            .stdout(out_file)
            .stderr(log_file)
            .spawn()
            .expect("start lifewatch run");
        let processed = std::panic::catch_unwind(|| {
            wait_for("the monitor to store every event", Duration::from_secs(60), || {
                db_summary(&db).filter(|summary| summary.events == events && summary.pending_outbox == 0)
            })
        });
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status =
            wait_for("the monitor to exit", Duration::from_secs(20), || child.try_wait().ok().flatten());
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        assert!(processed.is_ok(), "the monitor did not process the stream with URL credentials: {log}");
        assert!(status.success(), "clean shutdown exits 0, got {status:?}");
        assert!(log.contains("connected to NATS"), "{log}");
        assert!(!log.contains(MARKER) && !out.contains(MARKER), "the password leaked ({format})");
    }

    // URL credentials and explicit ones together: which one is meant is
    // unclear, so it is a usage error naming both.
    let output = lifewatch()
        .arg("publish")
        .arg(&fixture)
        .args(["--nats", &url, "--user", "urluser", "--password", MARKER])
        .output()
        .expect("run lifewatch publish");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--nats") && stderr.contains("--user"), "both are named: {stderr}");
    assert!(!stderr.contains(MARKER), "the password leaked: {stderr}");
}

/// A seed file or credentials file whose content is malformed is a local
/// configuration error (exit 2, naming the file) found before connecting,
/// not the server refusing the credentials; its content is not printed.
#[test]
fn malformed_seed_and_credentials_files_are_configuration_errors() {
    let dir = TempDir::new("malformed-auth");
    let server = server_with_config(
        dir.path(),
        "nats-server.conf",
        &format!("authorization {{\n  users = [\n    {{ nkey: \"{USER_PUBLIC_KEY}\" }}\n  ]\n}}\n"),
    );
    const GARBAGE: &str = "SUNOTASEEDATALLmarker0123";
    let seed_file = dir.path().join("malformed.nk");
    std::fs::write(&seed_file, format!("{GARBAGE}\n")).expect("write the seed file");
    let creds_file = dir.path().join("malformed.creds");
    std::fs::write(
        &creds_file,
        format!(
            "-----BEGIN NATS USER JWT-----\nnot.a.jwt\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{GARBAGE}\n------END USER NKEY SEED------\n"
        ),
    )
    .expect("write the credentials file");
    let fixture = fixture();
    for (flag, file) in [("--nkey-seed-file", &seed_file), ("--creds", &creds_file)] {
        let output = lifewatch()
            .arg("publish")
            .arg(&fixture)
            .args(["--nats", &server.url(), flag, file.to_str().expect("a UTF-8 path")])
            .output()
            .expect("run lifewatch publish");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: a configuration error: {stderr}");
        assert!(!stderr.contains("refused the credentials"), "{flag}: not the server's refusal: {stderr}");
        let name = file.file_name().and_then(|name| name.to_str()).expect("a file name");
        assert!(stderr.contains(name), "{flag}: the file is named: {stderr}");
        assert!(!stderr.contains(GARBAGE), "{flag}: the content is not printed: {stderr}");
    }
}
