//! The command line. Operators script these, so output is plain and parseable: the one
//! value asked for on stdout (an id, a password), everything else on stderr.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rampart_config::Config;
use rampart_identity::users::{create_user, insert_user, UserInput};
use rampart_store::{Actor, Email, RequestMeta, Role, Store, PLATFORM_TENANT_ID};

use crate::app;

#[derive(Parser, Debug)]
#[command(
    name = "rampart",
    version,
    about = "Self-hostable secure application platform"
)]
pub struct Cli {
    /// Configuration file (default: ./rampart.toml if it exists; or RAMPART_CONFIG).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (migrations run first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Platform administrators.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
    /// The keyring: named encryption keys and their versions.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run the edge layer alone (WAF, rate limits, client address, security headers) as
    /// a reverse proxy in front of any HTTP application. Configuration as for `serve`
    /// (`[edge]`, `[waf]`, `[http]`, `[redis]`); response rules are on.
    Edge {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The application: `http://host:port[/prefix]`.
        #[arg(long)]
        upstream: String,
        /// Skip the response phases (3 and 4) of the WAF.
        #[arg(long)]
        no_response_rules: bool,
    },
    /// The web application firewall's rules.
    #[command(subcommand)]
    Waf(WafCommand),
    /// Payments fraud rules.
    #[command(subcommand)]
    Fraud(FraudCommand),
    /// Ask a running node whether it is ready (for container health checks, which have
    /// no curl): exits 0 when `GET /ready` answers 200. Plain HTTP only.
    Health {
        /// Default: `/ready` on `http.listen` (0.0.0.0 becomes 127.0.0.1).
        #[arg(long)]
        url: Option<String>,
    },
    /// The job queue: list jobs, list dead jobs, re-queue a dead job.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Encrypted, verified backups, restores and restore drills.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Outgoing mail.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Detection rules over the stored security events.
    #[command(subcommand)]
    Detect(DetectCommand),
    /// The taxonomy observations are identified against.
    #[command(subcommand)]
    Taxa(TaxaCommand),
}

#[derive(Subcommand, Debug)]
pub enum TaxaCommand {
    /// Import (insert or update) taxa from a CSV with the columns id, parent_id,
    /// scientific_name, rank, common_name_en, common_name_id, iucn, geoprivacy. One
    /// transaction: a bad row (reported with its line) imports nothing.
    Import {
        /// The CSV file.
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum DetectCommand {
    /// Run the configured rules (`[detection]`, so a rule in `detection.rules_dir` can be
    /// tried before it goes live) over the security events stored in [--from, --to), each
    /// at its own time, and print the alerts they raise as JSON lines, then a count on
    /// stderr. Stores and sends nothing.
    Replay {
        /// RFC 3339, e.g. 2026-12-01T00:00:00Z.
        #[arg(long)]
        from: String,
        /// RFC 3339; default now.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MailCommand {
    /// Print the DKIM TXT record to publish for `[mail] dkim_selector`/`dkim_domain`
    /// (name on stderr, value on stdout).
    #[command(name = "dkim-record")]
    DkimRecord,
}

#[derive(Subcommand, Debug)]
pub enum FraudCommand {
    /// Replay past payments (CSV: time,card,amount,currency,ip,country[,email,card_country,
    /// fraud]) through the rules and report, per rule and overall, how many were flagged
    /// and, with fraud labels, precision and recall.
    Backtest {
        file: PathBuf,
        /// The merchant's rules as JSON (only the fields that differ from the defaults).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Jobs, newest first (100 at most).
    List {
        #[arg(long)]
        queue: Option<String>,
        /// queued, running, done or dead.
        #[arg(long)]
        state: Option<String>,
        /// One JSON object per line, payload included.
        #[arg(long)]
        json: bool,
    },
    /// Dead jobs: failed on every attempt, or permanently.
    Dead {
        #[arg(long)]
        json: bool,
    },
    /// Re-queue a dead job with a fresh set of attempts (audited).
    Retry { id: String },
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Take a backup now: a consistent snapshot while the server runs, compressed,
    /// encrypted, written to `backup.target_dir`, read back and checked. Prints its id.
    Create {
        #[arg(long)]
        json: bool,
    },
    /// Backups, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Re-hash a backup against its recorded SHA-256, decrypt and decompress all of it,
    /// and check it against its manifest. Exits non-zero naming the problem.
    Verify {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup, never over the live database. SQLite: into the data dir DIR
    /// (`--to`). PostgreSQL: into `--database-url` (an empty database), or by default a
    /// new database `rampart_restore_<id>` on the configured server.
    Restore {
        /// A backup id from `backup list`.
        #[arg(required_unless_present = "file")]
        id: Option<String>,
        /// A backup file instead, when the database that recorded it is gone: it opens
        /// with this deployment's root key.
        #[arg(long, conflicts_with = "id")]
        file: Option<PathBuf>,
        #[arg(long)]
        to: Option<PathBuf>,
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Restore the newest backup into a scratch place, open the store on it, verify the
    /// audit chains and row counts against the manifest; print the restore time (RTO)
    /// and the backup's age (RPO). Exits non-zero when the drill fails.
    Drill {
        #[arg(long)]
        json: bool,
    },
    /// Apply retention (`backup.keep_daily_days`, `keep_monthly_days`, `keep_yearly_days`).
    Prune {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum WafCommand {
    /// Run go-ftw YAML regression tests (CRS's own suite) in-process against a CRS
    /// directory. Ends with `N passed, N failed, N skipped`; exits non-zero on failures.
    Test {
        /// The CRS release directory (crs-setup.conf[.example] and rules/).
        #[arg(long)]
        rules: PathBuf,
        /// Directory of YAML tests (searched recursively), e.g. tests/regression/tests.
        #[arg(long)]
        tests: PathBuf,
        /// Tests to skip: one `<rule>-<test> reason` per line.
        #[arg(long)]
        exclusions: Option<PathBuf>,
    },
    /// Load the configured rule set (our rules, CRS, extra rules) and report how many
    /// rules compiled, or the file, line and reason of the first error.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Every key with its newest and minimum version.
    List,
    /// Add a version; new values seal under it, older versions still open.
    Rotate { name: String },
    /// Move every stored value sealed under NAME to its newest version (values are not
    /// decrypted, only their data keys re-wrapped).
    Rewrap { name: String },
    /// Retire the versions below N: values they sealed no longer open. Refused while
    /// stored values still use them, unless --force.
    Retire {
        name: String,
        #[arg(long)]
        below: u32,
        #[arg(long)]
        force: bool,
    },
    /// Signing keys (access tokens, audit checkpoints): kid, purpose, scope, algorithm,
    /// where the private key is held, and age.
    Signing,
    /// Make a new signing key for a set now. Sets otherwise rotate at their first use
    /// after `crypto.signing_key_rotation_days`.
    RotateSigning {
        /// access-token or audit-checkpoint
        #[arg(long)]
        purpose: String,
        /// kind:<tenant kind> or tenant:<tenant id>
        #[arg(long)]
        scope: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeysCommand {
    /// Create a key for a tenant and print its secret (shown this once).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// Comma-separated permissions, e.g. payments:write,audit:read.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk every tenant's audit chain and its signed checkpoints. Exits non-zero naming
    /// the first event that was altered, removed or reordered.
    Verify,
    /// Sign a checkpoint of every chain that has grown since its last one.
    Checkpoint,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML, secrets redacted.
    Show,
}

#[derive(Subcommand, Debug)]
pub enum TenantsCommand {
    /// Create a tenant and print its id.
    Create {
        #[arg(long)]
        name: String,
        /// government, lpk, employer, merchant, organization or community.
        #[arg(long)]
        kind: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a platform admin. The password is read from stdin; with nothing on stdin
    /// (or a terminal), one is generated and printed once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Import users with bcrypt hashes from a Laravel system. CSV with a header row:
    /// email,name,tenant,role,bcrypt_hash (tenant is a tenant id). Existing e-mails are
    /// skipped, so a re-run is safe. Passwords become Argon2id at each user's next login.
    Import { file: PathBuf },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Config(ConfigCommand::Show) => {
            print!("{}", config.to_redacted_toml());
            if config.edge.trusted_proxies.is_empty() {
                // On stderr, so the TOML on stdout stays loadable as it is.
                eprintln!(
                    "note: edge.trusted_proxies is empty: X-Forwarded-For and CF-Connecting-IP \
                     are ignored. Behind a load balancer, list it there, or every client \
                     shares its address for rate limits and login throttling."
                );
            }
            Ok(())
        }
        Command::Serve => {
            let telemetry = crate::telemetry::init_with_traces(&config);
            let listen = config.http.listen;
            let scheme = if config.tls.enabled() {
                "https"
            } else {
                "http"
            };
            let app = app::build(config).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(address = %listener.local_addr()?, scheme, "listening");
            let served = app::serve(app, listener, app::shutdown_signal()).await;
            // After the drain: the last requests' spans are exported too.
            telemetry.shutdown().await;
            served
        }
        Command::Edge {
            listen,
            upstream,
            no_response_rules,
        } => {
            let telemetry = crate::telemetry::init_with_traces(&config);
            let mut config = config;
            config.waf.inspect_responses = !no_response_rules;
            let upstream = crate::proxy::Upstream::parse(&upstream)?;
            let tls = config
                .tls
                .enabled()
                .then(|| crate::tls::server_config(&config.tls))
                .transpose()?;
            let router = crate::proxy::build(&config, upstream).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(address = %listener.local_addr()?, "edge proxy listening");
            let options = crate::listener::ServeOptions::from_config(&config.http, tls);
            let served =
                crate::listener::serve(router, listener, options, app::shutdown_signal()).await;
            telemetry.shutdown().await;
            served
        }
        Command::Fraud(FraudCommand::Backtest { file, rules, json }) => {
            let rules: rampart_payments::fraud::FraudRules = match rules {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let partial: serde_json::Value = serde_json::from_str(&text)
                        .with_context(|| format!("{}: not JSON", path.display()))?;
                    rampart_payments::fraud::FraudRules::from_partial(&partial).map_err(|e| {
                        anyhow::anyhow!("{}: not valid fraud rules: {e}", path.display())
                    })?
                }
                None => Default::default(),
            };
            rules.validate().map_err(anyhow::Error::msg)?;
            let input = std::fs::File::open(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let report = rampart_payments::backtest::run(&rules, std::io::BufReader::new(input))
                .with_context(|| format!("{}", file.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
        Command::Health { url } => {
            let url = url.unwrap_or_else(|| {
                let mut addr = config.http.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}/ready")
            });
            let uri: http::Uri = url.parse().with_context(|| format!("bad --url {url}"))?;
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<axum::body::Body>();
            let res = tokio::time::timeout(std::time::Duration::from_secs(3), client.get(uri))
                .await
                .with_context(|| format!("{url}: no answer within 3 s"))?
                .with_context(|| format!("{url}: cannot connect"))?;
            if !res.status().is_success() {
                bail!("{url} answered {}", res.status());
            }
            println!("ready");
            Ok(())
        }
        Command::Waf(WafCommand::Test {
            rules,
            tests,
            exclusions,
        }) => {
            let exclusions = match exclusions {
                Some(path) => rampart_waf::ftw::parse_exclusions(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => Default::default(),
            };
            let report = tokio::task::spawn_blocking(move || {
                rampart_waf::ftw::run(&rules, &tests, &exclusions)
            })
            .await??;
            print!("{report}");
            if !report.failed.is_empty() {
                bail!("{} WAF tests failed", report.failed.len());
            }
            Ok(())
        }
        Command::Waf(WafCommand::Check) => {
            let mut registry = prometheus_client::registry::Registry::default();
            match app::waf(
                &config,
                rampart_edge::waf::HttpPolicy::RampartApi,
                &mut registry,
                app::security_log(&config)?,
                Default::default(),
            )? {
                Some(waf) => {
                    // First line as before ("N rules loaded"): scripts read it.
                    println!("{} rules loaded", waf.rule_count());
                    match waf.crs() {
                        Some((dir, release)) => println!(
                            "OWASP CRS {} from {}, and Rampart's own rules",
                            release.unwrap_or("(release unknown)"),
                            dir.display()
                        ),
                        None => println!("no OWASP CRS: only Rampart's own rules run"),
                    }
                }
                None => println!("the WAF is off (waf.mode = \"off\")"),
            }
            Ok(())
        }
        Command::Taxa(TaxaCommand::Import { file }) => {
            let text =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let taxa = rampart_observations::checklist::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let store = open_store(&config).await?;
            let report = store.import_taxa(&taxa).await.map_err(|e| match e {
                rampart_store::StoreError::Constraint { constraint } => {
                    anyhow::anyhow!("{}: {constraint}", file.display())
                }
                other => other.into(),
            })?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Migrate => {
            crate::telemetry::init(&config);
            let report = Store::migrate(&app::store_options(&config)).await?;
            eprintln!(
                "{}: schema at version {} (applied now: {:?})",
                report.backend, report.version, report.applied
            );
            Ok(())
        }
        Command::Tenants(TenantsCommand::Create { name, kind }) => {
            let store = open_store(&config).await?;
            let (name, kind) = rampart_identity::tenants::parse_new_tenant(&name, &kind)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let audit = rampart_audit::event(Actor::System, "tenant.create", "tenant", cli_meta())
                .changes(serde_json::json!({ "name": name, "kind": kind.as_str() }))
                .build();
            let tenant = store.create_tenant(&name, kind, audit).await?;
            println!("{}", tenant.id);
            Ok(())
        }
        Command::Admin(AdminCommand::Create { email, name }) => {
            let store = open_store(&config).await?;
            let (password, generated) = read_or_generate_password()?;
            let user = create_user(
                &store,
                &config.auth,
                UserInput {
                    tenant_id: PLATFORM_TENANT_ID.to_string(),
                    email,
                    name,
                    role: Role::PlatformAdmin,
                    password: password.clone(),
                },
                Actor::System,
                cli_meta(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("created platform admin {} ({})", user.email, user.id);
            if generated {
                eprintln!("generated password (shown once; store it now):");
                println!("{password}");
            }
            Ok(())
        }
        Command::ApiKeys(ApiKeysCommand::Create {
            tenant,
            name,
            scopes,
            expires_in_days,
        }) => {
            let store = open_store(&config).await?;
            let rbac = app::rbac();
            let spec = rampart_identity::api_keys::parse_key_spec(
                &rbac,
                &name,
                &scopes,
                expires_in_days,
                None,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (key, secret) = rampart_identity::api_keys::issue_key(
                &store,
                rampart_identity::api_keys::KeyTarget::Tenant(&tenant),
                spec,
                Actor::System,
                cli_meta(),
            )
            .await
            .map_err(|e| match e {
                rampart_identity::IdentityError::NotFound => anyhow::anyhow!("no tenant {tenant}"),
                other => anyhow::anyhow!("{other}"),
            })?;
            eprintln!(
                "created API key {} ({}) for tenant {}; the secret is shown once:",
                key.id, key.name, key.tenant_id
            );
            println!("{secret}");
            Ok(())
        }
        Command::Mail(MailCommand::DkimRecord) => {
            let store = open_store(&config).await?;
            let crypto = app::crypto(&config, &store).await?;
            let Some(signer) = app::dkim(&config, &crypto).await? else {
                anyhow::bail!("DKIM is off: set mail.dkim_selector and mail.dkim_domain");
            };
            eprintln!(
                "publish as TXT at {}._domainkey.{}:",
                signer.selector, signer.domain
            );
            println!("{}", signer.record);
            Ok(())
        }
        Command::Keys(command) => {
            let store = open_store(&config).await?;
            let crypto = app::crypto(&config, &store).await?;
            keys_command(&store, &crypto, command).await
        }
        Command::Detect(DetectCommand::Replay { from, to }) => {
            let at = |field: &str, t: &str| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "--{field} must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"
                        )
                    })
            };
            let from_ms = at("from", &from)?;
            let to_ms = match &to {
                Some(t) => at("to", t)?,
                None => rampart_store::now_ms(),
            };
            let detector = crate::detect::load_rules(&config.detection)
                .map_err(|e| anyhow::anyhow!("detection rules: {e}"))?;
            let store = open_store(&config).await?;
            let mut alerts = 0usize;
            let events = crate::detect::replay(&store, detector, from_ms, to_ms, |alert| {
                alerts += 1;
                println!("{}", serde_json::to_string(alert).unwrap_or_default());
            })
            .await?;
            eprintln!("{events} events evaluated, {alerts} alerts");
            Ok(())
        }
        Command::Audit(command) => {
            let store = open_store(&config).await?;
            let crypto = app::crypto(&config, &store).await?;
            let keys = &crypto.signing;
            match command {
                AuditCommand::Verify => {
                    let report = rampart_audit::chain::verify_all(&store, keys).await?;
                    println!(
                        "verified {} events in {} chains, {} signed checkpoints",
                        report.events, report.chains, report.checkpoints
                    );
                }
                AuditCommand::Checkpoint => {
                    let made = rampart_audit::chain::checkpoint_due(&store, keys, 1, 0).await?;
                    println!("signed {made} checkpoints");
                }
            }
            Ok(())
        }
        Command::Jobs(command) => {
            let store = open_store(&config).await?;
            jobs_command(&store, command).await
        }
        Command::Backup(command) => {
            let store = open_store(&config).await?;
            let crypto = app::crypto(&config, &store).await?;
            backup_command(&config, &store, &crypto, command).await
        }
        Command::Users(UsersCommand::Import { file }) => {
            let store = open_store(&config).await?;
            import_users(&store, &file).await
        }
    }
}

async fn backup_command(
    config: &Config,
    store: &Store,
    crypto: &app::Crypto,
    command: BackupCommand,
) -> anyhow::Result<()> {
    use crate::backup;
    let log = backup::security_log(config)?;
    match command {
        BackupCommand::Create { json } => {
            let reporter = backup::progress::Reporter::for_cli(json);
            let progress = |line: &str| reporter.stage(line);
            let record = reporter
                .scope(backup::run_backup(config, store, crypto, &log, &progress))
                .await?;
            if json {
                print_json(&record)?;
            } else {
                eprintln!(
                    "backup {} complete: {} bytes, sha256 {}, key {} v{}, at {}",
                    record.id,
                    record.size_bytes,
                    record.sha256,
                    record.key_name,
                    record.key_version,
                    record.target
                );
                println!("{}", record.id);
            }
        }
        BackupCommand::List { json } => {
            let backups = store.list_backups().await?;
            if json {
                let rows: Vec<serde_json::Value> = backups
                    .iter()
                    .map(|b| {
                        let mut v = serde_json::to_value(b).unwrap_or_default();
                        v["manifest"] =
                            serde_json::from_str(&b.manifest).unwrap_or(serde_json::Value::Null);
                        v
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                println!("ID\tCREATED_AT_MS\tSTATUS\tBACKEND\tSIZE\tKEY\tSHA256\tTARGET");
                for b in backups {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}/v{}\t{}\t{}",
                        b.id,
                        b.created_at,
                        b.status,
                        b.backend,
                        b.size_bytes,
                        b.key_name,
                        b.key_version,
                        b.sha256,
                        b.target
                    );
                }
            }
        }
        BackupCommand::Verify { id, json } => {
            let report = backup::progress::Reporter::for_cli(json)
                .scope(backup::verify(config, store, crypto, &id))
                .await?;
            if json {
                print_json(&report)?;
            } else if report.ok {
                println!(
                    "backup {} verifies: {} bytes, sha256 {}",
                    report.id, report.size_bytes, report.sha256
                );
            }
            if !report.ok {
                bail!(
                    "backup {} does not verify: {}",
                    id,
                    report.problems.join("; ")
                );
            }
        }
        BackupCommand::Restore {
            id,
            file,
            to,
            database_url,
            json,
        } => {
            let target = match (to, database_url) {
                (Some(_), Some(_)) => bail!("give --to or --database-url, not both"),
                (Some(dir), None) => backup::RestoreTo::Dir(dir),
                (None, Some(url)) => backup::RestoreTo::DatabaseUrl(url),
                (None, None) if store.backend() == rampart_store::Backend::Postgres => {
                    backup::RestoreTo::NewDatabase
                }
                (None, None) => bail!("a SQLite backup restores into a folder: give --to DIR"),
            };
            let from = match (id, file) {
                (_, Some(file)) => backup::RestoreFrom::File(file),
                (Some(id), None) => backup::RestoreFrom::Recorded(id),
                (None, None) => bail!("give a backup id or --file PATH"),
            };
            let report = backup::progress::Reporter::for_cli(json)
                .scope(backup::restore(config, store, crypto, &log, from, target))
                .await?;
            if json {
                print_json(&report)?;
            } else {
                eprintln!(
                    "restored backup {} in {} ms; the live database was not touched",
                    report.id, report.elapsed_ms
                );
                if let Some(objects) = &report.objects_restored_to {
                    eprintln!("its object store files are in {objects}");
                }
                println!("{}", report.restored_to);
            }
        }
        BackupCommand::Drill { json } => {
            let report = backup::progress::Reporter::for_cli(json)
                .scope(backup::run_drill(config, store, crypto, &log))
                .await?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "drill of backup {}: {}\nRTO (restore, open, verify): {:.3} s \
                     (restore alone {:.3} s)\n\
                     RPO (backup age): {:.3} s\naudit: {} events in {} chains verified\n\
                     tables compared with the manifest: {}",
                    report.backup_id,
                    if report.ok { "passed" } else { "FAILED" },
                    report.rto_ms as f64 / 1000.0,
                    report.restore_ms as f64 / 1000.0,
                    report.rpo_ms as f64 / 1000.0,
                    report.audit_events_verified,
                    report.audit_chains,
                    report.tables_compared
                );
                for problem in &report.problems {
                    println!("problem: {problem}");
                }
            }
            if !report.ok {
                bail!("the restore drill failed: {}", report.problems.join("; "));
            }
        }
        BackupCommand::Prune { json } => {
            let report = backup::run_prune(config, store).await?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "pruned {} backups, kept {}",
                    report.pruned.len(),
                    report.kept
                );
            }
            if !report.failed.is_empty() {
                bail!(
                    "the files of {} backups due for pruning could not be removed (see the \
                     log); they stay listed and are tried again next time: {}",
                    report.failed.len(),
                    report.failed.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// `--json` output: one JSON document on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)?;
    let (store, _) = Store::open(&app::store_options(config)).await?;
    Ok(store)
}

fn cli_meta() -> RequestMeta {
    RequestMeta {
        request_id: None,
        source_ip: None,
        user_agent: Some(format!("rampart-cli/{}", env!("CARGO_PKG_VERSION"))),
    }
}

fn read_or_generate_password() -> anyhow::Result<(String, bool)> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut text = String::new();
        stdin.lock().read_to_string(&mut text)?;
        let line = text.lines().next().unwrap_or("").to_string();
        if !line.is_empty() {
            return Ok((line, false));
        }
    }
    // 24 bytes = 192 bits, as 32 base64url characters.
    Ok((rampart_crypto::random_secret("", 24), true))
}

#[derive(serde::Deserialize)]
struct ImportRow {
    email: String,
    #[serde(default)]
    name: String,
    tenant: String,
    role: String,
    bcrypt_hash: String,
}

async fn import_users(store: &Store, file: &std::path::Path) -> anyhow::Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let (mut imported, mut skipped, mut failed) = (0usize, 0usize, 0usize);
    for (index, record) in reader.deserialize::<ImportRow>().enumerate() {
        let line = index + 2; // the header is line 1
        let row = match record {
            Ok(row) => row,
            Err(e) => {
                eprintln!("line {line}: unreadable row: {e}");
                failed += 1;
                continue;
            }
        };
        let outcome = async {
            let email = Email::parse(&row.email).map_err(|e| format!("email {e}"))?;
            let role: Role = row.role.parse()?;
            if role == Role::PlatformAdmin {
                return Err("platform_admin cannot be imported; use `rampart admin create`".into());
            }
            if !rampart_identity::password::is_bcrypt(&row.bcrypt_hash) {
                return Err("bcrypt_hash is not a bcrypt hash ($2y$/$2b$/$2a$)".to_string());
            }
            insert_user(
                store,
                row.tenant.clone(),
                email,
                row.name.trim().to_string(),
                role,
                row.bcrypt_hash.clone(),
                Actor::System,
                cli_meta(),
            )
            .await
            .map_err(|e| e.to_string())
        }
        .await;
        match outcome {
            Ok(_) => imported += 1,
            Err(e) if e.contains("taken") => {
                eprintln!("line {line}: skipped: e-mail exists");
                skipped += 1;
            }
            Err(e) => {
                eprintln!("line {line}: {e}");
                failed += 1;
            }
        }
    }
    eprintln!("imported {imported}, skipped {skipped}, failed {failed}");
    if failed > 0 {
        bail!("{failed} rows failed");
    }
    Ok(())
}

use rampart_store::jobs::JOB_STATES;

async fn jobs_command(store: &Store, command: JobsCommand) -> anyhow::Result<()> {
    let (queue, state, json) = match command {
        JobsCommand::Retry { id } => {
            let audit = rampart_audit::event(Actor::System, "job.retry", "job", cli_meta()).build();
            let job = store
                .retry_dead_job(&id, audit)
                .await
                .map_err(|e| match e {
                    rampart_store::StoreError::NotFound => {
                        anyhow::anyhow!("no dead job {id} (see `rampart jobs dead`)")
                    }
                    rampart_store::StoreError::Conflict { .. } => anyhow::anyhow!(
                    "job {id} cannot be re-queued: a live job of the same kind holds its unique key"
                ),
                    other => other.into(),
                })?;
            tracing::info!(job = %job.id, kind = %job.kind, "dead job re-queued from the CLI");
            eprintln!("re-queued {} ({} on queue {})", job.id, job.kind, job.queue);
            println!("{}", job.id);
            return Ok(());
        }
        JobsCommand::Dead { json } => (None, Some("dead".to_string()), json),
        JobsCommand::List { queue, state, json } => (queue, state, json),
    };
    if let Some(s) = &state {
        if !JOB_STATES.contains(&s.as_str()) {
            bail!("--state must be one of {}", JOB_STATES.join(", "));
        }
    }
    let jobs = store
        .list_jobs(queue.as_deref(), state.as_deref(), 100)
        .await?;
    if json {
        for job in &jobs {
            println!("{}", serde_json::to_string(job)?);
        }
        return Ok(());
    }
    println!(
        "{:<36} {:<12} {:<20} {:<8} {:>8} {:<20} last error",
        "id", "queue", "kind", "state", "attempts", "run at"
    );
    for j in &jobs {
        let attempts = format!("{}/{}", j.attempts, j.max_attempts);
        println!(
            "{:<36} {:<12} {:<20} {:<8} {:>8} {:<20} {}",
            j.id,
            j.queue,
            j.kind,
            j.state,
            attempts,
            rampart_identity::rfc3339(j.run_at),
            j.last_error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// Sealed values of `name`'s registered columns whose key version is below `below`.
async fn values_below(store: &Store, name: &str, below: u32) -> anyhow::Result<usize> {
    let mut count = 0;
    for col in rampart_store::keyring::SEALED_COLUMNS
        .iter()
        .filter(|c| c.holds(name))
    {
        let mut after = String::new();
        loop {
            let page = store.sealed_values(col, &after, 500).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            count += page
                .iter()
                .filter(|(_, v)| {
                    rampart_crypto::envelope::key_of(v)
                        .is_ok_and(|(key, version)| key == name && version < below)
                })
                .count();
        }
    }
    Ok(count)
}

async fn keys_command(
    store: &Store,
    crypto: &app::Crypto,
    command: KeysCommand,
) -> anyhow::Result<()> {
    let keyring = &crypto.keyring;
    match command {
        KeysCommand::Signing => {
            println!(
                "{:<44} {:<17} {:<24} {:<6} {:<7} {:<9} created",
                "kid", "purpose", "scope", "alg", "held", "published"
            );
            for k in crypto.signing.all() {
                println!(
                    "{:<44} {:<17} {:<24} {:<6} {:<7} {:<9} {}",
                    k.kid,
                    k.purpose.as_str(),
                    k.scope,
                    k.alg.as_str(),
                    if k.in_token { "token" } else { "sealed" },
                    if k.published() { "yes" } else { "no" },
                    rampart_identity::rfc3339(k.created_at)
                );
            }
        }
        KeysCommand::RotateSigning { purpose, scope } => {
            let purpose: rampart_crypto::signing::Purpose =
                purpose.parse().map_err(anyhow::Error::msg)?;
            if purpose == rampart_crypto::signing::Purpose::Legacy {
                anyhow::bail!(
                    "legacy keys never sign again; rotate access-token or audit-checkpoint"
                );
            }
            if !(scope.starts_with("kind:") || scope.starts_with("tenant:")) {
                anyhow::bail!("--scope must be kind:<tenant kind> or tenant:<tenant id>");
            }
            let kid = crypto.signing.rotate(purpose, &scope).await?;
            eprintln!(
                "{} {scope}: new key signs from now on; the previous one verifies for a day",
                purpose.as_str()
            );
            println!("{kid}");
        }
        KeysCommand::List => {
            println!(
                "{:<24} {:>7} {:>7} {:>8}  last rotated",
                "name", "newest", "minimum", "versions"
            );
            for k in store.keyring_names().await? {
                println!(
                    "{:<24} {:>7} {:>7} {:>8}  {}",
                    k.name,
                    k.current_version,
                    k.min_version,
                    k.versions,
                    rampart_identity::rfc3339(k.rotated_at)
                );
            }
        }
        KeysCommand::Rotate { name } => {
            let version = keyring.rotate(&name).await?;
            eprintln!(
                "{name}: new values now seal under version {version}; older versions still open"
            );
            println!("{version}");
        }
        KeysCommand::Rewrap { name } => {
            let (mut moved, mut current, mut other) = (0usize, 0usize, 0usize);
            for col in rampart_store::keyring::SEALED_COLUMNS
                .iter()
                .filter(|c| c.holds(&name))
            {
                let mut after = String::new();
                loop {
                    let page = store.sealed_values(col, &after, 500).await?;
                    let Some((last, _)) = page.last() else { break };
                    after = last.clone();
                    for (id, value) in page {
                        // Values sealed before the keyring existed are not envelopes; a
                        // shared column also holds values of other keys.
                        match rampart_crypto::envelope::key_of(&value) {
                            Ok((key, _)) if key == name => {}
                            Ok(_) => continue,
                            Err(_) => {
                                other += 1;
                                continue;
                            }
                        }
                        let rewrapped = keyring.rewrap(&value).await?;
                        if rewrapped == value {
                            current += 1;
                        } else if store
                            .replace_sealed_value(col, &id, &value, rewrapped)
                            .await?
                        {
                            moved += 1;
                        }
                    }
                }
            }
            println!(
                "{name}: rewrapped {moved}, already newest {current}, not keyring values {other}"
            );
        }
        KeysCommand::Retire { name, below, force } => {
            let remaining = values_below(store, &name, below).await?;
            if remaining > 0 && !force {
                bail!(
                    "{remaining} stored values are still sealed under {name} versions below {below}; \
                     run `rampart keys rewrap {name}` first (or --force to make them unreadable)"
                );
            }
            keyring.retire_below(&name, below).await?;
            println!("{name}: versions below {below} retired");
        }
    }
    Ok(())
}
