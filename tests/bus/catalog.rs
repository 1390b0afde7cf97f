//! The bus catalog over a real `nats-server -js` (tests/natsd.rs): connecting (URL, TLS with
//! fluxrig's server name, client certificates, user/password, token, nkey), and the catalog
//! over the `wasm_catalog` bucket: import puts, a rack fetches, verifies against its
//! pinned cluster key, caches, and starts again without the server; a bad module from the
//! bus is refused and never cached.

use std::path::Path;
use std::process::Command;

use crate::natsd::NatsServer;
use crate::util::*;

/// Puts `value` under `key` in the server's `wasm_catalog` bucket, as a hostile or broken
/// publisher could (the bucket exists already).
fn kv_put(url: &str, key: &str, value: Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let store = js.get_key_value("wasm_catalog").await.unwrap();
        store.put(key, value.into()).await.unwrap();
    });
}

/// Node A: the tutorial's module imported and put on the bus; node B: a data folder with
/// only A's public cluster key pinned. Returns the hash.
fn two_nodes(d: &Dir, url: &str) -> String {
    d.write("polyglot.wasm", POLYGLOT);
    d.run(&["keys", "gen-cluster", "-o", "./vendor.key"], b"").ok();
    d.write("data/wasm/keys/vendor.key.pub", d.read("vendor.key.pub"));
    d.run(&["wasm", "sign", "polyglot.wasm", "vendor.key"], b"").ok();
    let import = d.run(&["wasm", "import", "polyglot.wasm", "--nats", url], b"");
    import.ok();
    assert!(import.stderr().contains("put into the bus catalog"), "{}", import.stderr());
    d.write("b/cluster.key.pub", d.read("data/cluster.key.pub"));
    let hash = import.stdout().trim().to_string();
    d.write("scenario.yaml", tutorial_scenario(&hash, 16));
    hash
}

#[test]
fn a_rack_fetches_verifies_and_caches_a_bus_module_then_starts_without_the_server() {
    let d = Dir::new("bus-catalog");
    let mut server = NatsServer::start_in(&d.path(""), &[]);
    let url = server.url();
    let hash = two_nodes(&d, &url);
    let cached = format!("b/wasm/{hash}.wasm");
    assert!(!d.path(&cached).exists());
    let args = ["run", "--scenario", "scenario.yaml", "--data-dir", "b", "--nats", &url];
    let run = d.run(&args, b"{\"raw\":\"aGk=\"}\n");
    run.ok();
    assert!(run.stderr().contains("fetched from the bus catalog, verified, cached"), "{}", run.stderr());
    assert!(run.stdout().contains("\"raw_text\":\"hi\""), "{}", run.stdout());
    // Cached byte for byte as node A stored it.
    assert_eq!(d.read(&cached), d.read(&format!("data/wasm/{hash}.wasm")));
    // The server is gone: the rack still starts from its cache (it does not connect).
    server.kill();
    let offline = d.run(&args, b"{\"raw\":\"aGk=\"}\n");
    offline.ok();
    assert!(!offline.stderr().contains("fetched"), "{}", offline.stderr());
    assert!(offline.stdout().contains("\"raw_text\":\"hi\""));
    // The bucket is on disk: after a restart of the server another node still fetches it.
    server.restart();
    d.write("b2/cluster.key.pub", d.read("data/cluster.key.pub"));
    d.run(&["run", "--scenario", "scenario.yaml", "--data-dir", "b2", "--nats", &url], b"").ok();
    assert!(d.path(&format!("b2/wasm/{hash}.wasm")).exists());
}

#[test]
fn a_bus_module_that_fails_its_checks_is_refused_and_never_cached() {
    let d = Dir::new("bus-refuse");
    let server = NatsServer::start_in(&d.path(""), &[]);
    let url = server.url();
    let hash = two_nodes(&d, &url);
    let cached = format!("b/wasm/{hash}.wasm");
    let run =
        |data: &str| d.run(&["run", "--scenario", "scenario.yaml", "--data-dir", data, "--nats", &url], b"");
    // A node that pinned another cluster key refuses the module (trust failure, exit 3).
    d.run(&["keys", "gen-cluster", "-o", "other/cluster.key"], b"").ok();
    d.write("c/cluster.key.pub", d.read("other/cluster.key.pub"));
    run("c").fails(3, "gear 'my-zig-filter'");
    assert!(!d.path(&format!("c/wasm/{hash}.wasm")).exists());
    // A changed module under the right name: the cluster signature no longer holds.
    let mut tampered = d.read(&format!("data/wasm/{hash}.wasm"));
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    kv_put(&url, &format!("{hash}.wasm"), tampered);
    let refused = run("b");
    refused.fails(3, &format!("nats:wasm_catalog/{hash}.wasm"));
    assert!(!d.path(&cached).exists());
    // Another signed module under this name: its content does not hash to the name.
    let other = import_unsigned(&d, "picky.wasm", &picky_gear());
    kv_put(&url, &format!("{hash}.wasm"), d.read(&format!("data/wasm/{other}.wasm")));
    run("b").fails(3, &format!("nats:wasm_catalog/{hash}.wasm"));
    assert!(!d.path(&cached).exists());
    // A module in neither catalog is named as such.
    let missing = "0".repeat(64);
    d.write("missing.yaml", tutorial_scenario(&missing, 16));
    d.run(&["run", "--scenario", "missing.yaml", "--data-dir", "b", "--nats", &url], b"")
        .fails(1, "is neither in the catalog b/wasm nor in the bus catalog 'wasm_catalog'");
    // Without a server, a missing module says the server cannot be reached.
    drop(server);
    run("b").fails(1, "cannot connect");
}

#[test]
fn import_refuses_a_module_over_the_bus_value_cap_before_storing_it() {
    let d = Dir::new("bus-cap");
    let server = NatsServer::start_in(&d.path(""), &[]);
    d.write("big.wasm", vec![0u8; 1024 * 1024 + 1]);
    d.run(&["wasm", "import", "big.wasm", "--allow-unsigned", "--nats", &server.url()], b"")
        .fails(1, "module is 1048577 bytes, more than the 1048576 bytes a value of the bus catalog 'wasm_catalog' may hold");
    assert!(!d.path("data/wasm").exists());
}

#[test]
fn connection_errors_are_one_line_and_flags_are_checked() {
    let d = Dir::new("bus-connect");
    d.write("picky.wasm", picky_gear());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{closed}");
    d.run(&["wasm", "import", "picky.wasm", "--allow-unsigned", "--nats", &url], b"")
        .fails(1, &format!("NATS server {url}: cannot connect"));
    // Nothing was imported: the bus is reached first.
    assert!(!d.path("data/wasm").exists());
    d.run(&["wasm", "import", "picky.wasm", "--nats-ca", "ca.pem"], b"")
        .fails(2, "the --nats-* options need --nats URL");
    d.run(&["wasm", "import", "picky.wasm", "--nats", "http://x:1"], b"")
        .fails(2, "must start with nats:// or tls://");
    d.run(&["wasm", "import", "picky.wasm", "--nats", &url, "--nats-user", "u"], b"")
        .fails(2, "--nats-user and --nats-password-file go together");
    d.write("token", "t\n");
    d.write("seed", "SU\n");
    d.run(
        &[
            "wasm",
            "import",
            "picky.wasm",
            "--nats",
            &url,
            "--nats-token-file",
            "token",
            "--nats-nkey",
            "seed",
        ],
        b"",
    )
    .fails(2, "give one kind of NATS credentials");
    d.write("empty", "");
    d.run(&["wasm", "import", "picky.wasm", "--nats", &url, "--nats-token-file", "empty"], b"")
        .fails(1, "the NATS token file is empty");
}

#[test]
fn user_password_and_token_credentials() {
    let d = Dir::new("bus-auth");
    d.write("picky.wasm", picky_gear());
    d.write("good", "s3cret\n");
    d.write("bad", "guess\n");
    let server = NatsServer::start_in(&d.path(""), &["--user", "rack", "--pass", "s3cret"]);
    let url = server.url();
    let import = |extra: &[&str]| {
        let mut args = vec!["wasm", "import", "picky.wasm", "--allow-unsigned", "--nats", &url];
        args.extend_from_slice(extra);
        d.run(&args, b"")
    };
    import(&[]).fails(1, "cannot connect");
    import(&["--nats-user", "rack", "--nats-password-file", "bad"]).fails(1, "cannot connect");
    import(&["--nats-user", "rack", "--nats-password-file", "good"]).ok();
    drop(server);
    let server = NatsServer::start_in(&d.path("t"), &["--auth", "s3cret"]);
    let url = server.url();
    d.run(
        &["wasm", "import", "picky.wasm", "--allow-unsigned", "--nats", &url, "--nats-token-file", "bad"],
        b"",
    )
    .fails(1, "cannot connect");
    d.run(
        &["wasm", "import", "picky.wasm", "--allow-unsigned", "--nats", &url, "--nats-token-file", "good"],
        b"",
    )
    .ok();
}

/// Makes a CA, a server certificate for the name `flux` only (not 127.0.0.1, as on a
/// fluxrig Mixer), and a client certificate, with openssl.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:flux\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca"],
        ]
        .concat(),
    );
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        openssl(
            &[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")]].concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            ext,
        ]);
    }
}

#[test]
fn tls_checks_the_server_name_flux_and_can_present_a_client_certificate() {
    let d = Dir::new("bus-tls");
    d.write("picky.wasm", picky_gear());
    certificates(&d.path(""));
    let (cert, key, ca) = (d.path("server.pem"), d.path("server.key"), d.path("ca.pem"));
    let tls = ["--tls", "--tlscert", cert.to_str().unwrap(), "--tlskey", key.to_str().unwrap()];
    let server = NatsServer::start_in(&d.path(""), &tls);
    let url = server.url();
    let import = |extra: &[&str]| {
        let mut args = vec!["wasm", "import", "picky.wasm", "--allow-unsigned", "--nats", &url];
        args.extend_from_slice(extra);
        d.run(&args, b"")
    };
    // The certificate names `flux`, the URL 127.0.0.1: valid for fluxrig's server name.
    import(&["--nats-ca", "ca.pem"]).ok();
    import(&["--nats-ca", "ca.pem", "--nats-server-name", "mixer.example"]).fails(1, "cannot connect");
    // A CA that did not sign it.
    import(&["--nats-ca", "client.pem"]).fails(1, "cannot connect");
    // Plain text to a server that requires TLS.
    import(&[]).fails(1, "cannot connect");
    drop(server);
    // A server that requires a client certificate (mTLS).
    let mtls = [&tls[..], &["--tlsverify", "--tlscacert", ca.to_str().unwrap()]].concat();
    let server = NatsServer::start_in(&d.path("m"), &mtls);
    let url = server.url();
    let import = |extra: &[&str]| {
        let mut args = vec!["wasm", "import", "picky.wasm", "--allow-unsigned", "--nats", &url];
        args.extend_from_slice(extra);
        d.run(&args, b"")
    };
    import(&["--nats-ca", "ca.pem"]).fails(1, "cannot connect");
    import(&["--nats-ca", "ca.pem", "--nats-cert", "client.pem", "--nats-key", "client.key"]).ok();
}

#[test]
fn nkey_credentials() {
    let d = Dir::new("bus-nkey");
    d.write("picky.wasm", picky_gear());
    let user = nkeys::KeyPair::new_user();
    let other = nkeys::KeyPair::new_user();
    d.write("seed", format!("{}\n", user.seed().unwrap()));
    d.write("other", format!("{}\n", other.seed().unwrap()));
    d.write("server.conf", format!("authorization {{ users = [ {{ nkey: {} }} ] }}\n", user.public_key()));
    let conf = d.path("server.conf");
    let server = NatsServer::start_in(&d.path(""), &["-c", conf.to_str().unwrap()]);
    let url = server.url();
    let import = |extra: &[&str]| {
        let mut args = vec!["wasm", "import", "picky.wasm", "--allow-unsigned", "--nats", &url];
        args.extend_from_slice(extra);
        d.run(&args, b"")
    };
    import(&[]).fails(1, "cannot connect");
    import(&["--nats-nkey", "other"]).fails(1, "cannot connect");
    import(&["--nats-nkey", "seed"]).ok();
}
