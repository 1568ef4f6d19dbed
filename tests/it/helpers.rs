//! `spawn_app` and typed helpers: each test gets its own server on port 0, its own database
//! (a fresh SQLite file or a fresh PostgreSQL database), a manual clock and a new keyring.

use std::sync::Arc;

use sqlx::Connection;
use trustplane::app::AppState;
use trustplane::clock::{ManualClock, SECOND};
use trustplane::config::Config;
use trustplane::crypto::Keyring;
use trustplane::staff::model::{DisplayName, Email, Role};
use trustplane::staff::store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the PostgreSQL test databases are created.
pub fn postgres_admin_url() -> String {
    std::env::var("TRUSTPLANE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// 2027-01-15 08:00 UTC, a fixed start for every test clock.
pub const T0: i64 = 1_800_000_000_000;

pub struct TestApp {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    pg_database: Option<String>,
    handle: axum_server::Handle,
}

/// A fresh database URL for `backend` (and the PostgreSQL database name to drop later).
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> (String, Option<String>) {
    match backend {
        Backend::Sqlite => (
            format!("sqlite://{}?mode=rwc", dir.join("trustplane.db").display()),
            None,
        ),
        Backend::Postgres => {
            sqlx::any::install_default_drivers();
            let name = format!("tp_test_{}", uuid::Uuid::new_v4().simple());
            let admin = postgres_admin_url();
            let mut conn = sqlx::AnyConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {admin}: {e}"));
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin).expect("admin url");
            url.set_path(&format!("/{name}"));
            (url.to_string(), Some(name))
        }
    }
}

pub fn test_config(dir: &std::path::Path, database_url: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        database_url: database_url.to_owned(),
        // Detection runs in real worker processes of the real binary, as in production.
        detect_isolation: "process".into(),
        worker_exe: env!("CARGO_BIN_EXE_trustplane").into(),
        detect_workers: 2,
        ..Config::default()
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let (database_url, pg_database) = fresh_database(backend, dir.path()).await;
    let mut config = test_config(dir.path(), &database_url);
    adjust(&mut config);
    let clock = ManualClock::new(T0);
    let keyring_path = dir.path().join("shared-keyring.json");
    Keyring::generate()
        .write_new(&keyring_path)
        .expect("keyring");
    let keyring = Keyring::load_or_create(&keyring_path).expect("keyring");
    let state = trustplane::server::build_state(config, clock.clone(), keyring)
        .await
        .expect("build state");
    let running = trustplane::server::start(state.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start server");
    let scheme = if state.config.tls_enabled() {
        "https"
    } else {
        "http"
    };
    TestApp {
        base: format!("{scheme}://{}", running.addr),
        addr: running.addr,
        state,
        clock,
        database_url,
        dir,
        pg_database,
        handle: running.handle,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(name) = self.pg_database.take() {
            // Drop the per-test database from a separate thread: Drop cannot await.
            let admin = postgres_admin_url();
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A staff account created for a test, with the secrets a test needs to log in.
#[derive(Debug, Clone)]
pub struct TestStaff {
    pub id: String,
    pub email: String,
    pub password: String,
    pub totp_secret: Option<String>,
}

pub const PASSWORD: &str = "a perfectly long test passphrase";

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser-like client: keeps cookies, does not follow redirects.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client")
    }

    /// Creates an account directly in the store; with `mfa`, TOTP is already enrolled.
    pub async fn create_staff(&self, email: &str, roles: &[Role], mfa: bool) -> TestStaff {
        let now = self.state.now();
        let hash = trustplane::authn::password::hash(PASSWORD).unwrap();
        let mut tx = self.state.db.begin().await.unwrap();
        let id = store::insert(
            &mut tx,
            &Email::parse(email).unwrap(),
            &DisplayName::parse(email.split('@').next().unwrap()).unwrap(),
            Some(&hash),
            now,
        )
        .await
        .unwrap();
        for role in roles {
            store::grant_role(&mut tx, &id, *role, "test", now)
                .await
                .unwrap();
        }
        let totp_secret = if mfa {
            let secret = trustplane::authn::totp::generate_secret();
            let sealed = self.state.keyring.seal(secret.as_bytes(), id.as_bytes());
            store::enable_totp(&mut tx, &id, &sealed, 0, now)
                .await
                .unwrap();
            Some(secret)
        } else {
            None
        };
        tx.commit().await.unwrap();
        TestStaff {
            id,
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            totp_secret,
        }
    }

    /// The TOTP code for `staff` at the test clock's current time.
    pub fn current_code(&self, staff: &TestStaff) -> String {
        let secret = staff.totp_secret.as_ref().expect("staff has TOTP");
        let step = trustplane::authn::totp::step_at(self.state.now());
        trustplane::authn::totp::code_at_step(secret, step).unwrap()
    }

    pub async fn get(&self, client: &reqwest::Client, path: &str) -> reqwest::Response {
        client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post(
        &self,
        client: &reqwest::Client,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    /// GETs `page`, then POSTs `form` to `action` with the page's CSRF token.
    pub async fn submit(
        &self,
        client: &reqwest::Client,
        page: &str,
        action: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let html = self.get(client, page).await.text().await.unwrap();
        let csrf = csrf_of(&html);
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("csrf", &csrf));
        self.post(client, action, &fields).await
    }

    /// Password step only; returns the response (a redirect on success).
    pub async fn login_password(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        self.submit(
            client,
            "/login",
            "/login",
            &[("email", email), ("password", password)],
        )
        .await
    }

    /// Full login with password and the current TOTP code. Moves the clock one TOTP step
    /// first so codes are never reused between logins in one test.
    pub async fn login(&self, client: &reqwest::Client, staff: &TestStaff) {
        self.clock.advance(30 * SECOND);
        let response = self
            .login_password(client, &staff.email, &staff.password)
            .await;
        assert_eq!(response.status(), 303, "password step");
        assert_eq!(location(&response), "/login/totp");
        let code = self.current_code(staff);
        let response = self
            .submit(client, "/login/totp", "/login/totp", &[("code", &code)])
            .await;
        assert_eq!(response.status(), 303, "totp step");
        assert_eq!(location(&response), "/");
    }

    /// Logs a new client in as a new account holding `role`.
    pub async fn logged_in_as(&self, role: Role) -> (reqwest::Client, TestStaff) {
        let staff = self
            .create_staff(
                &format!(
                    "{}-{}@example.com",
                    role,
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                ),
                &[role],
                true,
            )
            .await;
        let client = self.client();
        self.login(&client, &staff).await;
        (client, staff)
    }

    /// Audit actions in order.
    pub async fn audit_actions(&self) -> Vec<(String, String)> {
        use sqlx::Row;
        sqlx::query("SELECT action, outcome FROM audit_log ORDER BY seq")
            .fetch_all(&self.state.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("action"), r.get("outcome")))
            .collect()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sql)
            .fetch_one(&self.state.db.pool)
            .await
            .unwrap()
            .get::<i64, _>(0)
    }
}

/// The CSRF token in a page's first form.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// A hidden field's value (`version`, …) from a page.
pub fn field_of(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The stable error code a portal error page carries.
pub fn error_code(html: &str) -> Option<String> {
    let marker = "data-error=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// Declares a test that runs once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    };
}

impl TestApp {
    /// Everything in the audit log as one string, for "no secret leaked" checks.
    pub async fn audit_text(&self) -> String {
        use sqlx::Row;
        sqlx::query("SELECT actor, action, target, details FROM audit_log ORDER BY seq")
            .fetch_all(&self.state.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {}\n",
                    r.get::<String, _>(0),
                    r.get::<String, _>(1),
                    r.get::<String, _>(2),
                    r.get::<String, _>(3)
                )
            })
            .collect()
    }
}

impl TestApp {
    /// A second server (another "node") on the same database, with the same keyring.
    pub async fn second_node(&self) -> trustplane::app::AppState {
        let config = test_config(self.dir.path(), &self.database_url);
        let keyring_path = self.dir.path().join("shared-keyring.json");
        if !keyring_path.exists() {
            panic!("second_node needs the first node's keyring; use spawn_app_shared");
        }
        let keyring = Keyring::load_or_create(&keyring_path).unwrap();
        trustplane::server::build_state(config, self.clock.clone(), keyring)
            .await
            .unwrap()
    }

    /// Creates a customer directly in the store.
    pub async fn create_customer(&self, name: &str, env: &str, retention_days: i64) -> String {
        let now = self.state.now();
        let mut tx = self.state.db.begin().await.unwrap();
        let id = trustplane::customers::store::insert(
            &mut tx,
            &trustplane::customers::CustomerName::parse(name).unwrap(),
            &Email::parse("ops@customer.example").unwrap(),
            trustplane::keys::format::KeyEnv::parse(env).unwrap(),
            trustplane::customers::RetentionDays::new(retention_days).unwrap(),
            "test",
            now,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        id
    }

    /// Issues a key directly; returns (key id, secret).
    pub async fn issue_key(&self, customer_id: &str, scopes: &str) -> (String, String) {
        let now = self.state.now();
        let customer = trustplane::customers::store::find(&self.state.db.pool, customer_id)
            .await
            .unwrap()
            .unwrap();
        let scopes = trustplane::keys::model::Scope::parse_list(scopes).unwrap();
        let mut tx = self.state.db.begin().await.unwrap();
        let issued = trustplane::keys::issue(
            &mut tx,
            &self.state.keyring,
            &customer,
            "test key",
            &scopes,
            None,
            "test",
            &trustplane::audit::RequestMeta::default(),
            now,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        (issued.id, issued.secret)
    }

    /// Every stored byte of the database as text, to prove a secret is not in it.
    pub async fn database_dump(&self) -> String {
        use sqlx::Row;
        match self.state.db.backend {
            trustplane::db::Backend::Sqlite => {
                let _ = sqlx::query("PRAGMA wal_checkpoint(FULL)")
                    .execute(&self.state.db.pool)
                    .await;
                let mut all = Vec::new();
                for entry in std::fs::read_dir(self.dir.path()).unwrap() {
                    let path = entry.unwrap().path();
                    if path
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("trustplane.db")
                    {
                        all.extend(std::fs::read(&path).unwrap());
                    }
                }
                String::from_utf8_lossy(&all).into_owned()
            }
            trustplane::db::Backend::Postgres => {
                let tables: Vec<String> = sqlx::query(
                    "SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'public'",
                )
                .fetch_all(&self.state.db.pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("t"))
                .collect();
                let mut dump = String::new();
                for table in tables {
                    let rows =
                        sqlx::query(&format!("SELECT CAST(t AS TEXT) AS row FROM \"{table}\" t"))
                            .fetch_all(&self.state.db.pool)
                            .await
                            .unwrap();
                    for row in rows {
                        dump.push_str(&row.get::<String, _>("row"));
                        dump.push('\n');
                    }
                }
                dump
            }
        }
    }
}
