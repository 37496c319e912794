//! An `nginx.conf` read the way NGINX reads it, to find every `proxy_wasm` directive and the
//! exact configuration bytes each hands its filter.
//!
//! Hand-written on purpose: what matters here is NGINX's own tokenizer (`ngx_conf_read_token`
//! in `src/core/ngx_conf_file.c`) to the byte, since `nginx -t` never looks inside the filter's
//! configuration and the filter then receives whatever that tokenizer produced. The nginx.conf
//! parsers on crates.io are written for formatting or analysis and do not reproduce its rules:
//! in every argument, quoted or not, `\n`, `\r` and `\t` become control characters, `\"`, `\'`
//! and `\\` lose their backslash and any other backslash stays; a backslash hides the next
//! character from the quote and separator checks; a closing quote must be followed by a space,
//! `;`, `{` or `)`; `${` does not open a block; and a token (or a comment) of 4096 bytes or more
//! is an error. This module reads bytes only (no I/O): `include` goes through a callback.

/// NGINX reads its configuration through a buffer of this size (`NGX_CONF_BUFFER`); a token
/// that fills it is rejected.
const CONF_BUFFER: usize = 4096;

/// How deep `include` may nest before the reading stops (an include cycle, most likely).
const MAX_INCLUDE_DEPTH: usize = 32;

/// How many files `include` may bring in, all told (a file that includes itself twice would
/// otherwise be read 2^32 times).
const MAX_INCLUDED_FILES: usize = 10_000;

/// A position in one of the files read: an index into [`Config::sources`], 1-based line and
/// 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The file, an index into [`Config::sources`].
    pub source: usize,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

/// One argument of a directive, unescaped as NGINX unescapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The bytes NGINX passes on.
    pub value: Vec<u8>,
    /// Where it starts (its opening quote, if quoted).
    pub position: Position,
}

/// A directive: its name and arguments, and its block if it opens one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The name, then the arguments.
    pub words: Vec<Arg>,
    /// The directives inside its `{ }`, if it has a block.
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// The directive's name.
    pub fn name(&self) -> &[u8] {
        &self.words[0].value
    }

    /// The arguments after the name.
    pub fn args(&self) -> &[Arg] {
        &self.words[1..]
    }

    /// Where the directive starts.
    pub fn position(&self) -> Position {
        self.words[0].position
    }
}

/// A configuration that NGINX's reader accepted: its directives, with included files spliced
/// in where `include` stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The names of the files read (the main one first); [`Position::source`] indexes this.
    pub sources: Vec<String>,
    /// The top-level directives.
    pub directives: Vec<Directive>,
    /// What could not be followed (an include that matched no readable file), with where.
    pub warnings: Vec<(Position, String)>,
}

/// Why NGINX would refuse the file (as `nginx -t` says it), and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where NGINX reports it.
    pub position: Position,
    /// NGINX's message, e.g. `unexpected "}"`.
    pub message: String,
}

/// What an `include` pattern resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Included {
    /// The files it names, in the order NGINX reads them: (display name, contents).
    Files(Vec<(String, Vec<u8>)>),
    /// It could not be read; the reason, for a warning.
    Unreadable(String),
}

/// Reads `text` (named `name`) as NGINX does. `include` hands each pattern (unescaped, as
/// written) to `include`, which finds and reads the files.
pub fn read(
    name: &str,
    text: &[u8],
    include: &mut dyn FnMut(&[u8]) -> Included,
) -> Result<Config, SyntaxError> {
    let mut reader = Reader {
        sources: vec![name.to_string()],
        warnings: Vec::new(),
        include,
    };
    let directives = reader.file(0, text, 0)?;
    Ok(Config {
        sources: reader.sources,
        directives,
        warnings: reader.warnings,
    })
}

struct Reader<'a> {
    sources: Vec<String>,
    warnings: Vec<(Position, String)>,
    include: &'a mut dyn FnMut(&[u8]) -> Included,
}

impl Reader<'_> {
    /// The directives of one whole file (a file must close every block it opens).
    fn file(
        &mut self,
        source: usize,
        text: &[u8],
        depth: usize,
    ) -> Result<Vec<Directive>, SyntaxError> {
        let mut tokens = Tokenizer::new(source, text);
        let directives = self.block(&mut tokens, depth, false)?;
        Ok(directives)
    }

    /// Directives up to the end of the file (`inside_block` false) or the closing `}`.
    fn block(
        &mut self,
        tokens: &mut Tokenizer<'_>,
        depth: usize,
        inside_block: bool,
    ) -> Result<Vec<Directive>, SyntaxError> {
        let mut directives = Vec::new();
        loop {
            match tokens.next()? {
                Token::End => {
                    if inside_block {
                        return Err(tokens.error("unexpected end of file, expecting \"}\""));
                    }
                    return Ok(directives);
                }
                Token::BlockEnd => {
                    if !inside_block {
                        return Err(tokens.error("unexpected \"}\""));
                    }
                    return Ok(directives);
                }
                Token::Statement(words) => {
                    if words[0].value == b"include" && words.len() == 2 {
                        self.include(&words[1], depth, &mut directives)?;
                    } else {
                        directives.push(Directive { words, block: None });
                    }
                }
                Token::BlockStart(words) => {
                    let block = self.block(tokens, depth, true)?;
                    directives.push(Directive {
                        words,
                        block: Some(block),
                    });
                }
            }
        }
    }

    fn include(
        &mut self,
        pattern: &Arg,
        depth: usize,
        into: &mut Vec<Directive>,
    ) -> Result<(), SyntaxError> {
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(SyntaxError {
                position: pattern.position,
                message: format!(
                    "includes nested more than {MAX_INCLUDE_DEPTH} deep (does a file include itself?)"
                ),
            });
        }
        match (self.include)(&pattern.value) {
            Included::Unreadable(reason) => self.warnings.push((pattern.position, reason)),
            Included::Files(files) => {
                if self.sources.len() + files.len() > MAX_INCLUDED_FILES {
                    return Err(SyntaxError {
                        position: pattern.position,
                        message: format!(
                            "more than {MAX_INCLUDED_FILES} included files (does a file include itself?)"
                        ),
                    });
                }
                for (name, text) in files {
                    let source = self.sources.len();
                    self.sources.push(name);
                    into.extend(self.file(source, &text, depth + 1)?);
                }
            }
        }
        Ok(())
    }
}

/// What one call of the tokenizer reads, as `ngx_conf_read_token` returns it.
#[derive(Debug)]
enum Token {
    /// Words ended by `;`.
    Statement(Vec<Arg>),
    /// Words ended by `{`.
    BlockStart(Vec<Arg>),
    /// `}`.
    BlockEnd,
    /// The end of the file, outside any statement.
    End,
}

struct Tokenizer<'a> {
    source: usize,
    text: &'a [u8],
    pos: usize,
    line: usize,
    column: usize,
}

/// A byte in a message: itself if printable ASCII, else its escape.
fn shown(ch: u8) -> String {
    if ch.is_ascii_graphic() {
        char::from(ch).to_string()
    } else {
        format!("\\x{ch:02x}")
    }
}

fn is_space(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Tokenizer<'a> {
    fn new(source: usize, text: &'a [u8]) -> Tokenizer<'a> {
        Tokenizer {
            source,
            text,
            pos: 0,
            line: 1,
            column: 1,
        }
    }

    fn here(&self) -> Position {
        Position {
            source: self.source,
            line: self.line,
            column: self.column,
        }
    }

    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError {
            position: self.here(),
            message: message.to_string(),
        }
    }

    /// The next statement, block start, block end or the end of the file. The state and its
    /// transitions follow `ngx_conf_read_token` one for one.
    fn next(&mut self) -> Result<Token, SyntaxError> {
        let mut words: Vec<Arg> = Vec::new();
        let mut need_space = false;
        let mut last_space = true;
        let mut sharp_comment = false;
        let mut variable = false;
        let mut quoted = false;
        let mut s_quoted = false;
        let mut d_quoted = false;
        // The current token's first byte (after an opening quote), and where it starts
        // (at the quote) for reporting.
        let mut start = self.pos;
        let mut start_position = self.here();

        loop {
            if self.pos >= self.text.len() {
                if !words.is_empty() || !last_space {
                    return Err(self.error("unexpected end of file, expecting \";\" or \"}\""));
                }
                return Ok(Token::End);
            }
            // NGINX finds this when its buffer runs out with the token filling all of it.
            if self.pos - start >= CONF_BUFFER {
                let message = if d_quoted || s_quoted {
                    let quote = if d_quoted { '"' } else { '\'' };
                    format!(
                        "too long parameter, probably missing terminating \"{quote}\" character"
                    )
                } else {
                    let end = (start + 10).min(self.text.len());
                    format!(
                        "too long parameter \"{}...\" started",
                        String::from_utf8_lossy(&self.text[start..end]).escape_debug()
                    )
                };
                return Err(SyntaxError {
                    position: start_position,
                    message: format!(
                        "{message} (NGINX reads arguments through a {CONF_BUFFER}-byte buffer: keep a quoted one under {} bytes)",
                        CONF_BUFFER - 1
                    ),
                });
            }

            let ch = self.text[self.pos];
            let position = self.here();
            self.pos += 1;
            if ch == b'\n' {
                self.line += 1;
                self.column = 1;
                sharp_comment = false;
            } else if ch & 0xc0 != 0x80 {
                self.column += 1;
            }

            if sharp_comment {
                continue;
            }
            if quoted {
                quoted = false;
                continue;
            }
            if need_space {
                if is_space(ch) {
                    last_space = true;
                    need_space = false;
                    continue;
                }
                match ch {
                    b';' => return Ok(Token::Statement(words)),
                    b'{' => return Ok(Token::BlockStart(words)),
                    b')' => {
                        last_space = true;
                        need_space = false;
                    }
                    _ => {
                        return Err(SyntaxError {
                            position,
                            message: format!("unexpected \"{}\"", shown(ch)),
                        });
                    }
                }
            }

            if last_space {
                start = self.pos - 1;
                start_position = position;
                if is_space(ch) {
                    continue;
                }
                match ch {
                    b';' | b'{' => {
                        if words.is_empty() {
                            return Err(SyntaxError {
                                position,
                                message: format!("unexpected \"{}\"", char::from(ch)),
                            });
                        }
                        return Ok(if ch == b'{' {
                            Token::BlockStart(words)
                        } else {
                            Token::Statement(words)
                        });
                    }
                    b'}' => {
                        if !words.is_empty() {
                            return Err(SyntaxError {
                                position,
                                message: "unexpected \"}\"".to_string(),
                            });
                        }
                        return Ok(Token::BlockEnd);
                    }
                    b'#' => {
                        sharp_comment = true;
                        continue;
                    }
                    b'\\' => {
                        quoted = true;
                        last_space = false;
                        continue;
                    }
                    b'"' => {
                        start += 1;
                        d_quoted = true;
                        last_space = false;
                        continue;
                    }
                    b'\'' => {
                        start += 1;
                        s_quoted = true;
                        last_space = false;
                        continue;
                    }
                    b'$' => {
                        variable = true;
                        last_space = false;
                        continue;
                    }
                    _ => last_space = false,
                }
            } else {
                if ch == b'{' && variable {
                    continue;
                }
                variable = false;
                if ch == b'\\' {
                    quoted = true;
                    continue;
                }
                if ch == b'$' {
                    variable = true;
                    continue;
                }
                let mut found = false;
                if d_quoted {
                    if ch == b'"' {
                        d_quoted = false;
                        need_space = true;
                        found = true;
                    }
                } else if s_quoted {
                    if ch == b'\'' {
                        s_quoted = false;
                        need_space = true;
                        found = true;
                    }
                } else if is_space(ch) || ch == b';' || ch == b'{' {
                    last_space = true;
                    found = true;
                }
                if found {
                    words.push(Arg {
                        value: unescape(&self.text[start..self.pos - 1]),
                        position: start_position,
                    });
                    match ch {
                        b';' => return Ok(Token::Statement(words)),
                        b'{' => return Ok(Token::BlockStart(words)),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// A token's bytes as NGINX copies them into the argument.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            match raw.get(i + 1) {
                Some(b'"' | b'\'' | b'\\') => i += 1,
                Some(b't') => {
                    out.push(b'\t');
                    i += 2;
                    continue;
                }
                Some(b'r') => {
                    out.push(b'\r');
                    i += 2;
                    continue;
                }
                Some(b'n') => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// One `proxy_wasm` directive: the filter it runs and the configuration it hands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyWasm {
    /// The module name (the first argument).
    pub module: String,
    /// The module's path, from `module <name> <path>` in the `wasm { }` block, if declared.
    pub module_path: Option<String>,
    /// The configuration argument as the filter receives it; `None` when there is none
    /// (the filter then receives an empty configuration).
    pub config: Option<Vec<u8>>,
    /// Where the configuration argument starts (the directive, when there is none).
    pub position: Position,
    /// The blocks around it, e.g. `http > server (listen 8000) > location /`.
    pub context: String,
    /// Why NGINX itself would reject the directive (`nginx -t` fails), if it would.
    pub invalid: Option<String>,
}

/// Every `proxy_wasm` directive in `config`, in file order.
pub fn proxy_wasm_filters(config: &Config) -> Vec<ProxyWasm> {
    let mut modules = Vec::new();
    collect_modules(&config.directives, false, &mut modules);
    let mut found = Vec::new();
    let mut context = Vec::new();
    collect_proxy_wasm(&config.directives, &modules, &mut context, &mut found);
    found
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `module <name> <path>` declared in a `wasm { }` block: (name, path).
fn collect_modules(directives: &[Directive], in_wasm: bool, into: &mut Vec<(Vec<u8>, String)>) {
    for directive in directives {
        if in_wasm && directive.name() == b"module" && directive.args().len() >= 2 {
            let args = directive.args();
            into.push((args[0].value.clone(), lossy(&args[1].value)));
        }
        if let Some(block) = &directive.block {
            collect_modules(block, in_wasm || directive.name() == b"wasm", into);
        }
    }
}

fn collect_proxy_wasm(
    directives: &[Directive],
    modules: &[(Vec<u8>, String)],
    context: &mut Vec<String>,
    into: &mut Vec<ProxyWasm>,
) {
    for directive in directives {
        match &directive.block {
            Some(block) => {
                context.push(describe_block(directive));
                collect_proxy_wasm(block, modules, context, into);
                context.pop();
            }
            None if directive.name() == b"proxy_wasm" => {
                let args = directive.args();
                let module = args.first().map(|a| a.value.clone()).unwrap_or_default();
                let invalid = match args.len() {
                    1 | 2 if module.is_empty() => {
                        Some(format!("invalid module name \"{}\"", lossy(&module)))
                    }
                    1 | 2 => None,
                    _ => Some(
                        "invalid number of arguments in \"proxy_wasm\" directive (it takes a module name and one configuration: quote the configuration)"
                            .to_string(),
                    ),
                };
                into.push(ProxyWasm {
                    module_path: modules
                        .iter()
                        .find(|(name, _)| *name == module)
                        .map(|(_, path)| path.clone()),
                    module: lossy(&module),
                    config: args.get(1).map(|a| a.value.clone()),
                    position: args.get(1).map_or(directive.position(), |a| a.position),
                    context: if context.is_empty() {
                        "main".to_string()
                    } else {
                        context.join(" > ")
                    },
                    invalid,
                });
            }
            None => {}
        }
    }
}

/// A block as a reader recognises it: `location /api`, `server (listen 8000)`.
fn describe_block(directive: &Directive) -> String {
    let mut text = lossy(directive.name());
    for arg in directive.args() {
        text.push(' ');
        text.push_str(&lossy(&arg.value));
    }
    if directive.name() == b"server"
        && let Some(block) = &directive.block
    {
        let named = |name: &[u8]| {
            block
                .iter()
                .find(|d| d.name() == name && !d.args().is_empty())
                .map(|d| {
                    d.args()
                        .iter()
                        .map(|a| lossy(&a.value))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
        };
        if let Some(names) = named(b"server_name") {
            text.push_str(&format!(" (server_name {names})"));
        } else if let Some(listen) = named(b"listen") {
            text.push_str(&format!(" (listen {listen})"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_includes(_: &[u8]) -> Included {
        Included::Unreadable("no includes here".into())
    }

    fn filters(text: &str) -> Vec<ProxyWasm> {
        let config = read("nginx.conf", text.as_bytes(), &mut no_includes).expect("reads");
        proxy_wasm_filters(&config)
    }

    #[test]
    fn single_quoted_configs_are_unescaped_as_nginx_does() {
        let found = filters(
            "http { server { listen 80; location /a { proxy_wasm f '{\"a\\n\": \"\\\\n\\'\"}'; } } }",
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].config.as_deref(),
            Some(&b"{\"a\n\": \"\\n'\"}"[..])
        );
        assert_eq!(found[0].context, "http > server (listen 80) > location /a");
        assert_eq!(found[0].position.column, 55);
    }

    #[test]
    fn other_backslashes_stay() {
        let found = filters("proxy_wasm f \"a\\qb\\\"c\\td\";");
        assert_eq!(found[0].config.as_deref(), Some(&b"a\\qb\"c\td"[..]));
    }

    #[test]
    fn a_token_filling_nginx_buffer_is_refused_like_nginx() {
        // NGINX counts from the first byte after the quote up to the byte it is about to
        // read: 4094 bytes, the closing quote, then `;` fit; one more does not.
        let ok = format!("proxy_wasm f '{}';", "x".repeat(4094));
        assert_eq!(filters(&ok)[0].config.as_ref().map(Vec::len), Some(4094));
        let long = format!("proxy_wasm f '{}';", "x".repeat(4095));
        let error = read("n", long.as_bytes(), &mut no_includes).expect_err("too long");
        assert!(
            error
                .message
                .starts_with("too long parameter \"xxxxxxxxxx...\" started")
        );
        let open = format!("proxy_wasm f '{}", "x".repeat(5000));
        let error = read("n", open.as_bytes(), &mut no_includes).expect_err("unterminated");
        assert!(
            error
                .message
                .starts_with("too long parameter, probably missing terminating \"'\" character")
        );
        assert_eq!((error.position.line, error.position.column), (1, 14));
    }

    #[test]
    fn syntax_errors_name_nginx_line() {
        let error = read("n", b"http {\n  proxy_wasm f 'a'x;\n}", &mut no_includes)
            .expect_err("unexpected x");
        assert_eq!(error.message, "unexpected \"x\"");
        assert_eq!(error.position.line, 2);
        let error = read("n", b"http {\n", &mut no_includes).expect_err("open block");
        assert_eq!(error.message, "unexpected end of file, expecting \"}\"");
        let error = read("n", b"}", &mut no_includes).expect_err("stray }");
        assert_eq!(error.message, "unexpected \"}\"");
    }

    #[test]
    fn variables_with_braces_do_not_open_blocks() {
        let found = filters("location / { set $a ${b}c; proxy_wasm m; }");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].config, None);
    }
}
