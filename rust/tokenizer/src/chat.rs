//! Chat templates: the Jinja templates models ship (`tokenizer_config.json`'s `chat_template`,
//! GGUF's `tokenizer.chat_template`), rendered by `minijinja` set up the way `transformers`
//! sets up Jinja2 for `apply_chat_template`:
//!
//! - blocks trim the newline after them and the spaces before them (`trim_blocks`,
//!   `lstrip_blocks`); a single trailing newline of the template is dropped (Jinja2's default);
//! - `raise_exception(message)` fails the rendering with the message;
//! - `tojson` writes JSON as Python's `json.dumps(..., ensure_ascii=False)` does (`", "` and
//!   `": "` separators, non-ASCII kept, keys in their given order; `indent=n` for pretty output);
//! - Python string and dict methods (`.strip()`, `.startswith()`, `.items()` ...) through
//!   `minijinja-contrib`'s compatibility layer;
//! - the context holds `messages`, `add_generation_prompt` and the caller's extra variables
//!   (`bos_token`, `eos_token`, `tools` ...).
use std::io;

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, Value};

use crate::{Result, TokenizerError};

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

fn template_error(what: &str, e: &Error) -> TokenizerError {
    let mut msg = format!("chat template: {what}: {e}");
    if let Some(detail) = e.detail() {
        if !msg.contains(detail) {
            msg.push_str(&format!(" ({detail})"));
        }
    }
    TokenizerError::Invalid(msg)
}

/// `json.dumps` separators without indentation: `", "` and `": "`.
struct PythonCompact;

impl serde_json::ser::Formatter for PythonCompact {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// The `tojson` filter of `transformers`' template environment.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let written = match indent {
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonCompact);
            serde::Serialize::serialize(value, &mut ser)
        }
        Some(n) => {
            let pad = vec![b' '; n];
            let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            serde::Serialize::serialize(value, &mut ser)
        }
    };
    written.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let text = String::from_utf8(out)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    // Already JSON: not to be escaped again if auto-escaping were on.
    Ok(Value::from_safe_string(text))
}

fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    /// Compiles a template; a syntax error is refused with its line.
    pub fn new(source: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| template_error("cannot compile", &e))?;
        Ok(ChatTemplate { env })
    }

    /// Renders `messages` (a JSON list of `{"role", "content", ...}` objects) with
    /// `add_generation_prompt` and `extra` variables (a JSON object, e.g. `{"bos_token": "<s>"}`).
    pub fn render(
        &self,
        messages_json: &str,
        add_generation_prompt: bool,
        extra_json: &str,
    ) -> Result<String> {
        let parse = |what: &str, text: &str| {
            serde_json::from_str::<Value>(text)
                .map_err(|e| TokenizerError::Json(format!("chat template {what}: {e}")))
        };
        let messages = parse("messages", messages_json)?;
        if messages.kind() != minijinja::value::ValueKind::Seq {
            return Err(TokenizerError::Invalid(
                "chat template messages: expected a list of messages".into(),
            ));
        }
        let extra = parse("variables", extra_json)?;
        if extra.kind() != minijinja::value::ValueKind::Map {
            return Err(TokenizerError::Invalid(
                "chat template variables: expected an object".into(),
            ));
        }
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            ..extra
        };
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| template_error("cannot load", &e))?;
        template
            .render(ctx)
            .map_err(|e| template_error("cannot render", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    #[test]
    fn renders_chatml() {
        let t = ChatTemplate::new(CHATML).unwrap();
        let out = t
            .render(r#"[{"role": "user", "content": "hi"}]"#, true, "{}")
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn tojson_writes_like_python() {
        let t = ChatTemplate::new("{{ messages[0] | tojson }}|{{ messages | tojson(indent=2) }}")
            .unwrap();
        let out = t
            .render(r#"[{"z": "é<", "a": [1, 2.5, null]}]"#, false, "{}")
            .unwrap();
        assert_eq!(
            out,
            "{\"z\": \"é<\", \"a\": [1, 2.5, null]}|[\n  {\n    \"z\": \"é<\",\n    \"a\": [\n      1,\n      2.5,\n      null\n    ]\n  }\n]"
        );
    }

    #[test]
    fn errors_are_reported() {
        assert!(ChatTemplate::new("{% for %}").is_err());
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}").unwrap();
        let err = t.render("[]", false, "{}").unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
        let t = ChatTemplate::new(CHATML).unwrap();
        assert!(t.render("{}", false, "{}").is_err());
        assert!(t.render("[", false, "{}").is_err());
    }
}
