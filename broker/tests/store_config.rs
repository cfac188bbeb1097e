//! `check-config` on store settings: Sentinel and Cluster addresses and passwords.

/// `check-config` names the file, the key and the reason for bad Sentinel/Cluster settings.
#[test]
fn redis_topology_config_is_checked() {
    use broker::config::{load_str, Mode, Problem};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broker.toml");
    let check = |store: &str| -> Vec<Problem> {
        let text = format!(
            "issuer = \"https://id.example.gov\"\nkeys = []\n\
             pairwise_secret = {{ env = \"STORE_TEST_UNSET_PAIRWISE\" }}\n[store]\n{store}"
        );
        match load_str(&text, &path, Mode::Serve) {
            Ok(_) => panic!("this configuration has problems"),
            Err(problems) => problems
                .into_iter()
                .filter(|p| p.key.starts_with("store"))
                .collect(),
        }
    };
    let has = |problems: &[Problem], key: &str, reason: &str| {
        assert!(
            problems.iter().any(|p| p.key == key
                && p.reason.contains(reason)
                && p.file.ends_with("broker.toml")),
            "expected `{key}`: …{reason}… among {problems:#?}"
        );
    };

    let p = check(
        "kind = \"redis\"\nmode = \"sentinel\"\n\
         sentinels = [\"redis://127.0.0.1:26379\", \"redis://:hunter2@10.0.0.2:26379\", \"redis://10.0.0.3\", \"rediss://10.0.0.4:26379\"]\n\
         password = { env = \"STORE_TEST_UNSET_PASSWORD\" }\ndb = -1\n",
    );
    has(&p, "store.master_name", "is required");
    has(&p, "store.sentinels[1]", "must not carry credentials");
    has(&p, "store.sentinels[2]", "port");
    has(&p, "store.sentinels[3]", "TLS");
    has(&p, "store.password", "STORE_TEST_UNSET_PASSWORD");
    has(&p, "store.db", "0 or more");
    assert!(
        !p.iter().any(|p| p.reason.contains("hunter2")),
        "a password in an address must not be echoed: {p:#?}"
    );
    assert!(
        !p.iter().any(|p| p.key == "store.sentinels[0]"),
        "a good address is accepted: {p:#?}"
    );

    let p = check("kind = \"redis\"\nmode = \"cluster\"\nnodes = []\nprefix = \"{b}:\"\n");
    has(&p, "store.nodes", "at least one address");
    has(&p, "store.prefix", "hash-tag");
    let p = check("kind = \"redis\"\nmode = \"cluster\"\nnodes = [\"redis://10.0.0.1:6379/2\", \"http://x\"]\n");
    has(&p, "store.nodes[0]", "database 0");
    has(&p, "store.nodes[1]", "scheme `http`");

    // Keys of another mode, and a single-mode store without its URL.
    let p = check(
        "kind = \"redis\"\nmode = \"cluster\"\nnodes = [\"redis://a:6379\"]\nmaster_name = \"m\"\n",
    );
    has(
        &p,
        "store",
        "`master_name` is only used with `mode = \"sentinel\"`",
    );
    let p = check("kind = \"redis\"\nsentinels = [\"redis://a:26379\"]\n");
    has(&p, "store", "`sentinels` is only used with");
    let p = check("kind = \"redis\"\n");
    has(
        &p,
        "store",
        "needs `url` (or set `mode = \"sentinel\"` or `\"cluster\"`)",
    );
    let p = check("kind = \"redis\"\nmode = \"ring\"\n");
    has(
        &p,
        "store",
        "unknown value `ring`: use one of `single`, `sentinel`, `cluster`",
    );
}
