//! An SMTP server on a loopback port, standing in for the mail relay in end-to-end tests of
//! email notifications.
//!
//! It speaks the plain-text subset of RFC 5321 that lettre's async transport uses: EHLO/HELO,
//! AUTH PLAIN and LOGIN (RFC 4954, when credentials are configured), MAIL, RCPT, DATA with dot
//! unstuffing, RSET, NOOP and QUIT; no TLS, no PIPELINING. Commands out of sequence get 503,
//! unknown ones 500, and with credentials configured MAIL before a successful AUTH gets 530.
//! Accepted messages are kept in memory for tests to inspect; 4xx/5xx replies to MAIL, RCPT or
//! DATA can be queued to exercise retry and bounce handling.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{self, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The name the server gives itself in its greeting and EHLO reply.
const SERVER_NAME: &str = "localhost";
/// A command or message line longer than this ends the session, so that a client that never
/// sends a line break cannot make the peer buffer without bound.
const MAX_LINE: usize = 1024 * 1024;
/// The LOGIN mechanism's prompts, base64 of `Username:` and `Password:` (the spellings lettre
/// recognises).
const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

// ---------------------------------------------------------------------------------------------
// Public interface
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct SmtpConfig {
    /// User name and password. When set, EHLO advertises `AUTH PLAIN LOGIN` and MAIL is refused
    /// (530) until the session has authenticated with them.
    pub credentials: Option<(String, String)>,
}

/// A message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The MAIL FROM path without its angle brackets (empty for the null path `<>`).
    pub from: String,
    /// The accepted RCPT TO paths, in order.
    pub to: Vec<String>,
    /// The message as sent after DATA, dot-unstuffed, line endings as received, without the
    /// terminating `.` line (the line break before it belongs to the last line).
    pub data: String,
    /// The user name the session authenticated as, if it did.
    pub auth_user: Option<String>,
}

/// Where an injected failure replaces the server's positive reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// MAIL FROM, instead of 250.
    Mail,
    /// RCPT TO, instead of 250.
    Rcpt,
    /// The DATA command, instead of 354 (the message is then not read).
    Data,
}

/// A running server. It stops, and drops its open sessions, when this is dropped.
pub struct SmtpPeer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        // The sessions are owned by the accept task, so aborting it ends them too.
        self.server.abort();
    }
}

impl SmtpPeer {
    /// Starts a server that needs no authentication.
    ///
    /// # Errors
    /// When the loopback port cannot be bound.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(SmtpConfig::default()).await
    }

    /// # Errors
    /// When the loopback port cannot be bound.
    pub async fn start_with(config: SmtpConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("SMTP peer: bind")?;
        let addr = listener.local_addr().context("SMTP peer: local address")?;
        let shared = Arc::new(Shared {
            credentials: config.credentials,
            state: Mutex::new(State::default()),
            accepted: watch::Sender::new(0),
        });
        let server = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The messages accepted so far, in the order their DATA ended.
    pub fn messages(&self) -> Vec<Mail> {
        self.shared.lock().mails.clone()
    }

    /// Waits until at least `n` messages were accepted and returns all of them.
    ///
    /// # Panics
    /// When fewer than `n` arrived within `timeout`; the message says which did.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let mut accepted = self.shared.accepted.subscribe();
        let arrived = tokio::time::timeout(timeout, accepted.wait_for(|&count| count >= n)).await;
        let mails = self.messages();
        if !matches!(arrived, Ok(Ok(_))) {
            let seen: Vec<String> = mails
                .iter()
                .map(|m| format!("<{}> -> {:?}", m.from, m.to))
                .collect();
            panic!(
                "SMTP peer: waited {timeout:?} for {n} message(s), {} arrived: {seen:?}",
                mails.len()
            );
        }
        mails
    }

    /// Makes the next `times` commands at `stage` (counted over all sessions) answer
    /// `code text` instead of the positive reply, after the usual sequence and syntax checks
    /// passed. The command has no effect then: no transaction starts, the recipient is not
    /// added, DATA does not begin. Failures injected for the same stage apply in order.
    ///
    /// # Panics
    /// When `code` is not a 4xx or 5xx reply code.
    pub fn fail_next(&self, stage: Stage, code: u16, text: &str, times: usize) {
        assert!(
            (400..600).contains(&code),
            "SMTP peer: fail_next needs a 4xx or 5xx code, not {code}"
        );
        if times == 0 {
            return;
        }
        self.shared.lock().faults.push(Fault {
            stage,
            code,
            text: text.to_owned(),
            left: times,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

struct Shared {
    credentials: Option<(String, String)>,
    state: Mutex<State>,
    /// How many messages were accepted; wakes `wait_for`.
    accepted: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    mails: Vec<Mail>,
    faults: Vec<Fault>,
}

struct Fault {
    stage: Stage,
    code: u16,
    text: String,
    left: usize,
}

impl Shared {
    /// A panicking test must not wedge every other session, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, mail: Mail) -> usize {
        let count = {
            let mut state = self.lock();
            state.mails.push(mail);
            state.mails.len()
        };
        // Counted up rather than set, so that two sessions ending at once cannot publish their
        // counts out of order.
        self.accepted.send_modify(|accepted| *accepted += 1);
        count
    }

    /// The reply to use instead of the positive one at `stage`, if a failure is queued.
    fn take_fault(&self, stage: Stage) -> Option<(u16, String)> {
        let mut state = self.lock();
        let index = state.faults.iter().position(|f| f.stage == stage)?;
        let fault = &mut state.faults[index];
        fault.left -= 1;
        let reply = (fault.code, fault.text.clone());
        if fault.left == 0 {
            state.faults.remove(index);
        }
        Some(reply)
    }
}

// ---------------------------------------------------------------------------------------------
// Protocol
// ---------------------------------------------------------------------------------------------

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    // Owned by this task so that aborting it also ends every open session.
    let mut sessions = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                sessions.spawn(serve(stream, Arc::clone(&shared)));
            }
            Err(e) => {
                // Transient (a connection reset before it was accepted, out of descriptors);
                // back off briefly instead of spinning.
                eprintln!("SMTP peer: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // Sessions end with the client; their results (I/O errors included) do not matter.
        while sessions.try_join_next().is_some() {}
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    // Replies are single writes that the client waits for; Nagle would only delay them.
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    let mut session = Session {
        shared,
        reader: BufReader::new(reader),
        writer,
        greeted: false,
        auth_user: None,
        from: None,
        to: Vec::new(),
    };
    session
        .reply(220, &format!("{SERVER_NAME} ESMTP workflowops-tests"))
        .await?;
    while let Some(line) = session.read_line().await? {
        let line = String::from_utf8_lossy(strip_eol(&line)).into_owned();
        let (verb, arg) = line
            .split_once(' ')
            .map_or((line.as_str(), ""), |(verb, arg)| (verb, arg.trim()));
        if !session.command(&verb.to_ascii_uppercase(), arg).await? {
            break;
        }
    }
    Ok(())
}

struct Session {
    shared: Arc<Shared>,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    greeted: bool,
    auth_user: Option<String>,
    /// Set by MAIL: a mail transaction is open.
    from: Option<String>,
    to: Vec<String>,
}

/// The outcome of an AUTH exchange.
enum Sasl {
    Credentials {
        user: String,
        password: String,
    },
    Refused(u16, &'static str),
    /// The client hung up in the middle.
    Gone,
}

impl Session {
    /// Handles one command; false once the session is over.
    async fn command(&mut self, verb: &str, arg: &str) -> io::Result<bool> {
        match verb {
            "EHLO" => self.ehlo(arg).await?,
            "HELO" => self.helo(arg).await?,
            "AUTH" => self.auth(arg).await?,
            "MAIL" => self.mail(arg).await?,
            "RCPT" => self.rcpt(arg).await?,
            "DATA" => self.data(arg).await?,
            "RSET" => {
                self.reset();
                self.reply(250, "2.0.0 OK").await?;
            }
            "NOOP" => self.reply(250, "2.0.0 OK").await?,
            "QUIT" => {
                self.reply(221, "2.0.0 Bye").await?;
                return Ok(false);
            }
            _ => self.reply(500, "5.5.2 Command not recognized").await?,
        }
        Ok(true)
    }

    async fn ehlo(&mut self, client: &str) -> io::Result<()> {
        if client.is_empty() {
            return self.reply(501, "5.5.4 EHLO needs a domain").await;
        }
        self.reset();
        self.greeted = true;
        let mut lines = vec![
            format!("{SERVER_NAME} greets {client}"),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
        ];
        if self.shared.credentials.is_some() {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        self.reply(250, &lines.join("\n")).await
    }

    async fn helo(&mut self, client: &str) -> io::Result<()> {
        if client.is_empty() {
            return self.reply(501, "5.5.4 HELO needs a domain").await;
        }
        self.reset();
        self.greeted = true;
        self.reply(250, SERVER_NAME).await
    }

    async fn auth(&mut self, arg: &str) -> io::Result<()> {
        let shared = Arc::clone(&self.shared);
        let Some((user, password)) = &shared.credentials else {
            return self.reply(502, "5.5.1 AUTH not available").await;
        };
        if !self.greeted {
            return self.reply(503, "5.5.1 EHLO first").await;
        }
        if self.auth_user.is_some() {
            return self.reply(503, "5.5.1 Already authenticated").await;
        }
        if self.from.is_some() {
            return self
                .reply(503, "5.5.1 AUTH not allowed in a mail transaction")
                .await;
        }
        let (mechanism, initial) = arg
            .split_once(' ')
            .map_or((arg, None), |(mechanism, initial)| {
                (mechanism, Some(initial.trim()))
            });
        let sasl = match mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" => self.auth_plain(initial).await?,
            "LOGIN" => self.auth_login(initial).await?,
            _ => Sasl::Refused(504, "5.5.4 Unrecognized authentication type"),
        };
        match sasl {
            Sasl::Gone => Ok(()),
            Sasl::Refused(code, text) => self.reply(code, text).await,
            Sasl::Credentials {
                user: given_user,
                password: given_password,
            } if given_user == *user && given_password == *password => {
                self.auth_user = Some(given_user);
                self.reply(235, "2.7.0 Authentication successful").await
            }
            Sasl::Credentials { .. } => {
                self.reply(535, "5.7.8 Authentication credentials invalid")
                    .await
            }
        }
    }

    /// RFC 4616: base64 of `authzid NUL authcid NUL password`, inline or after an empty 334.
    async fn auth_plain(&mut self, initial: Option<&str>) -> io::Result<Sasl> {
        let response = match initial {
            // RFC 4954: `=` is an empty initial response.
            Some("=") => String::new(),
            Some(response) => response.to_owned(),
            None => match self.challenge("").await? {
                Some(response) => response,
                None => return Ok(Sasl::Gone),
            },
        };
        if response == "*" {
            return Ok(Sasl::Refused(501, "5.0.0 Authentication cancelled"));
        }
        let Some(decoded) = decode(&response) else {
            return Ok(Sasl::Refused(501, "5.5.2 Cannot decode response"));
        };
        let mut parts = decoded.split('\0');
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(Sasl::Refused(501, "5.5.2 Malformed PLAIN response"));
        };
        if !authzid.is_empty() && authzid != user {
            return Ok(Sasl::Refused(535, "5.7.8 Cannot act as another user"));
        }
        Ok(Sasl::Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// The LOGIN mechanism: the user name (inline or after a prompt), then the password after a
    /// prompt, each base64.
    async fn auth_login(&mut self, initial: Option<&str>) -> io::Result<Sasl> {
        let user = match initial {
            Some(user) => user.to_owned(),
            None => match self.challenge(LOGIN_USERNAME).await? {
                Some(user) => user,
                None => return Ok(Sasl::Gone),
            },
        };
        if user == "*" {
            return Ok(Sasl::Refused(501, "5.0.0 Authentication cancelled"));
        }
        let Some(password) = self.challenge(LOGIN_PASSWORD).await? else {
            return Ok(Sasl::Gone);
        };
        if password == "*" {
            return Ok(Sasl::Refused(501, "5.0.0 Authentication cancelled"));
        }
        match (decode(&user), decode(&password)) {
            (Some(user), Some(password)) => Ok(Sasl::Credentials { user, password }),
            _ => Ok(Sasl::Refused(501, "5.5.2 Cannot decode response")),
        }
    }

    /// Sends `334 challenge` and returns the client's answer; `None` when it hung up.
    async fn challenge(&mut self, challenge: &str) -> io::Result<Option<String>> {
        self.reply(334, challenge).await?;
        Ok(self
            .read_line()
            .await?
            .map(|line| String::from_utf8_lossy(strip_eol(&line)).trim().to_owned()))
    }

    async fn mail(&mut self, arg: &str) -> io::Result<()> {
        if !self.greeted {
            return self.reply(503, "5.5.1 EHLO/HELO first").await;
        }
        if self.shared.credentials.is_some() && self.auth_user.is_none() {
            return self.reply(530, "5.7.0 Authentication required").await;
        }
        if self.from.is_some() {
            return self.reply(503, "5.5.1 Nested MAIL command").await;
        }
        let Some(from) = path_argument(arg, "FROM:") else {
            return self.reply(501, "5.5.4 Syntax: MAIL FROM:<address>").await;
        };
        if let Some((code, text)) = self.shared.take_fault(Stage::Mail) {
            return self.reply(code, &text).await;
        }
        self.from = Some(from);
        self.reply(250, "2.1.0 OK").await
    }

    async fn rcpt(&mut self, arg: &str) -> io::Result<()> {
        if self.from.is_none() {
            return self.reply(503, "5.5.1 Need MAIL before RCPT").await;
        }
        let Some(to) = path_argument(arg, "TO:").filter(|to| !to.is_empty()) else {
            return self.reply(501, "5.5.4 Syntax: RCPT TO:<address>").await;
        };
        if let Some((code, text)) = self.shared.take_fault(Stage::Rcpt) {
            return self.reply(code, &text).await;
        }
        self.to.push(to);
        self.reply(250, "2.1.5 OK").await
    }

    async fn data(&mut self, arg: &str) -> io::Result<()> {
        if !arg.is_empty() {
            return self.reply(501, "5.5.4 DATA takes no argument").await;
        }
        if self.from.is_none() {
            return self.reply(503, "5.5.1 Need MAIL before DATA").await;
        }
        if self.to.is_empty() {
            return self.reply(503, "5.5.1 Need RCPT before DATA").await;
        }
        if let Some((code, text)) = self.shared.take_fault(Stage::Data) {
            return self.reply(code, &text).await;
        }
        self.reply(354, "End data with <CR><LF>.<CR><LF>").await?;
        let mut data = Vec::new();
        loop {
            // A client that hangs up mid-message sent nothing: the transaction is dropped.
            let Some(line) = self.read_line().await? else {
                return Ok(());
            };
            if strip_eol(&line) == b"." {
                break;
            }
            // RFC 5321 4.5.2: a leading dot was doubled by the client.
            data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
        }
        let mail = Mail {
            from: self.from.take().unwrap_or_default(),
            to: std::mem::take(&mut self.to),
            data: String::from_utf8_lossy(&data).into_owned(),
            auth_user: self.auth_user.clone(),
        };
        let id = self.shared.record(mail);
        self.reply(250, &format!("2.0.0 OK: queued as {id}")).await
    }

    /// Ends the mail transaction; authentication stays.
    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
    }

    /// Sends a reply; a `text` of several lines (split on `\n`) makes a multi-line reply.
    async fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        let lines: Vec<&str> = text.split('\n').collect();
        let last = lines.len() - 1;
        let out: String = lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let separator = if i == last { ' ' } else { '-' };
                format!("{code}{separator}{}\r\n", line.trim_end_matches('\r'))
            })
            .collect();
        self.writer.write_all(out.as_bytes()).await
    }

    /// One line with its line ending; `None` at the end of input (an unterminated last line
    /// means the client hung up mid-command and is dropped).
    async fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if line.last() == Some(&b'\n') {
            Ok(Some(line))
        } else if line.len() >= MAX_LINE {
            Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"))
        } else {
            Ok(None)
        }
    }
}

/// The line without its CRLF or bare LF.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The address in `FROM:<address> [parameters]` or `TO:<address> [parameters]`, the keyword
/// matched without regard to case and a space after the colon tolerated; `<>` gives "".
/// Parameters (SIZE=, BODY=, SMTPUTF8) are accepted and ignored.
fn path_argument(arg: &str, keyword: &str) -> Option<String> {
    if !arg.get(..keyword.len())?.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg.get(keyword.len()..)?.trim_start().strip_prefix('<')?;
    let (address, parameters) = rest.split_once('>')?;
    (parameters.is_empty() || parameters.starts_with(' ')).then(|| address.to_owned())
}

fn decode(base64: &str) -> Option<String> {
    let bytes = BASE64.decode(base64.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::TcpStream;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    use super::{Mail, SmtpConfig, SmtpPeer, Stage};

    const WAIT: Duration = Duration::from_secs(5);

    /// A raw SMTP client: sends lines as given and reads whole (multi-line) replies.
    struct Client {
        reader: BufReader<OwnedReadHalf>,
        writer: OwnedWriteHalf,
    }

    impl Client {
        async fn connect(peer: &SmtpPeer) -> Self {
            let stream = TcpStream::connect(peer.addr())
                .await
                .unwrap_or_else(|e| panic!("connect to SMTP peer: {e}"));
            let (reader, writer) = stream.into_split();
            let mut client = Self {
                reader: BufReader::new(reader),
                writer,
            };
            let (code, greeting) = client.reply().await;
            assert_eq!(code, 220);
            assert!(greeting.ends_with("ESMTP workflowops-tests"), "{greeting}");
            client
        }

        /// Writes `raw` as is (line endings included) and returns the reply.
        async fn send(&mut self, raw: &str) -> (u16, String) {
            self.writer
                .write_all(raw.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("send {raw:?}: {e}"));
            self.reply().await
        }

        /// Sends one command with CRLF.
        async fn cmd(&mut self, command: &str) -> (u16, String) {
            self.send(&format!("{command}\r\n")).await
        }

        /// The reply's code and its lines' texts joined with `\n`.
        async fn reply(&mut self) -> (u16, String) {
            let mut texts = Vec::new();
            loop {
                let mut line = String::new();
                self.reader
                    .read_line(&mut line)
                    .await
                    .unwrap_or_else(|e| panic!("read reply: {e}"));
                let line = line
                    .strip_suffix("\r\n")
                    .unwrap_or_else(|| panic!("reply line without CRLF: {line:?}"));
                let code = line
                    .get(..3)
                    .and_then(|c| c.parse::<u16>().ok())
                    .unwrap_or_else(|| panic!("reply line without a code: {line:?}"));
                texts.push(line.get(4..).unwrap_or_default().to_owned());
                if line.as_bytes().get(3) != Some(&b'-') {
                    return (code, texts.join("\n"));
                }
            }
        }

        async fn assert_closed(&mut self) {
            let mut rest = Vec::new();
            let read = tokio::time::timeout(WAIT, self.reader.read_to_end(&mut rest))
                .await
                .unwrap_or_else(|_| panic!("the server kept the connection open"))
                .unwrap_or_else(|e| panic!("read after QUIT: {e}"));
            assert_eq!(read, 0, "unexpected bytes: {rest:?}");
        }
    }

    fn with_credentials() -> SmtpConfig {
        SmtpConfig {
            credentials: Some(("alice".to_owned(), "s3cret".to_owned())),
        }
    }

    async fn start(config: SmtpConfig) -> SmtpPeer {
        SmtpPeer::start_with(config)
            .await
            .unwrap_or_else(|e| panic!("start SMTP peer: {e}"))
    }

    #[tokio::test]
    async fn authenticated_message_is_recorded_dot_unstuffed() {
        let peer = start(with_credentials()).await;
        assert_eq!(peer.host(), "127.0.0.1");
        assert_eq!(peer.port(), peer.addr().port());
        let mut c = Client::connect(&peer).await;

        let (code, ehlo) = c.cmd("EHLO client.test").await;
        assert_eq!(code, 250);
        let features: Vec<&str> = ehlo.lines().skip(1).collect();
        assert_eq!(features, ["8BITMIME", "SMTPUTF8", "AUTH PLAIN LOGIN"]);

        let plain = BASE64.encode("\0alice\0s3cret");
        assert_eq!(c.cmd(&format!("AUTH PLAIN {plain}")).await.0, 235);
        assert_eq!(
            c.cmd("MAIL FROM:<ops@example.com> SIZE=120 BODY=8BITMIME")
                .await
                .0,
            250
        );
        assert_eq!(c.cmd("RCPT TO:<dev@example.com>").await.0, 250);
        assert_eq!(c.cmd("RCPT TO:<lead@example.com>").await.0, 250);
        assert_eq!(c.cmd("DATA").await.0, 354);
        let body = "Subject: Run failed\r\n\r\nStep 3 failed.\r\n..hidden dot\r\n.\r\n";
        let (code, text) = c.send(body).await;
        assert_eq!(code, 250, "{text}");
        assert_eq!(c.cmd("QUIT").await.0, 221);
        c.assert_closed().await;

        let mails = peer.wait_for(1, WAIT).await;
        assert_eq!(
            mails,
            [Mail {
                from: "ops@example.com".to_owned(),
                to: vec!["dev@example.com".to_owned(), "lead@example.com".to_owned()],
                data: "Subject: Run failed\r\n\r\nStep 3 failed.\r\n.hidden dot\r\n".to_owned(),
                auth_user: Some("alice".to_owned()),
            }]
        );
    }

    #[tokio::test]
    async fn mail_before_auth_is_refused_and_auth_login_works() {
        let peer = start(with_credentials()).await;
        let mut c = Client::connect(&peer).await;
        assert_eq!(c.cmd("EHLO client.test").await.0, 250);

        assert_eq!(c.cmd("MAIL FROM:<ops@example.com>").await.0, 530);
        let wrong = BASE64.encode("\0alice\0wrong");
        assert_eq!(c.cmd(&format!("AUTH PLAIN {wrong}")).await.0, 535);

        let (code, prompt) = c.cmd("AUTH LOGIN").await;
        assert_eq!((code, prompt.as_str()), (334, "VXNlcm5hbWU6"));
        let (code, prompt) = c.cmd(&BASE64.encode("alice")).await;
        assert_eq!((code, prompt.as_str()), (334, "UGFzc3dvcmQ6"));
        assert_eq!(c.cmd(&BASE64.encode("s3cret")).await.0, 235);
        assert_eq!(c.cmd("MAIL FROM:<ops@example.com>").await.0, 250);
        assert!(peer.messages().is_empty());
    }

    #[tokio::test]
    async fn injected_rcpt_failure_answers_once_then_normally() {
        let peer = start(SmtpConfig::default()).await;
        peer.fail_next(Stage::Rcpt, 451, "4.3.0 Try again later", 1);
        let mut c = Client::connect(&peer).await;
        let (code, ehlo) = c.cmd("EHLO client.test").await;
        assert_eq!(code, 250);
        assert!(!ehlo.contains("AUTH"), "{ehlo}");

        assert_eq!(c.cmd("MAIL FROM:<>").await.0, 250);
        assert_eq!(
            c.cmd("RCPT TO:<dev@example.com>").await,
            (451, "4.3.0 Try again later".to_owned())
        );
        assert_eq!(c.cmd("RCPT TO:<dev@example.com>").await.0, 250);
        assert_eq!(c.cmd("DATA").await.0, 354);
        // Bare line feeds are tolerated, in commands and in the message.
        assert_eq!(c.send("Subject: x\n\nhello\n.\n").await.0, 250);

        let mails = peer.wait_for(1, WAIT).await;
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].from, "");
        assert_eq!(mails[0].to, ["dev@example.com"]);
        assert_eq!(mails[0].data, "Subject: x\n\nhello\n");
        assert_eq!(mails[0].auth_user, None);
    }

    #[tokio::test]
    async fn commands_out_of_sequence_get_503_and_unknown_ones_500() {
        let peer = start(SmtpConfig::default()).await;
        let mut c = Client::connect(&peer).await;
        assert_eq!(c.send("MAIL FROM:<ops@example.com>\n").await.0, 503);
        assert_eq!(c.cmd("HELO client.test").await.0, 250);
        assert_eq!(c.cmd("RCPT TO:<dev@example.com>").await.0, 503);
        assert_eq!(c.cmd("DATA").await.0, 503);
        assert_eq!(c.cmd("MAIL FROM:ops@example.com").await.0, 501);
        assert_eq!(c.cmd("MAIL FROM:<ops@example.com>").await.0, 250);
        assert_eq!(c.cmd("MAIL FROM:<ops@example.com>").await.0, 503);
        assert_eq!(c.cmd("DATA").await.0, 503);
        assert_eq!(c.cmd("RSET").await.0, 250);
        assert_eq!(c.cmd("RCPT TO:<dev@example.com>").await.0, 503);
        assert_eq!(c.cmd("NOOP").await.0, 250);
        assert_eq!(c.cmd("VRFY dev").await.0, 500);
        assert_eq!(c.cmd("AUTH PLAIN").await.0, 502);
        assert_eq!(c.cmd("QUIT").await.0, 221);
        c.assert_closed().await;
    }

    #[tokio::test]
    #[should_panic(expected = "for 1 message(s), 0 arrived")]
    async fn waiting_for_mail_that_never_comes_panics() {
        let peer = start(SmtpConfig::default()).await;
        peer.wait_for(1, Duration::from_millis(50)).await;
    }
}
