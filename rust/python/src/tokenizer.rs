//! Python binding of the `nano-tokenizer` crate: the class `nano._native.Tokenizer`, wrapped by
//! the pure-Python `nano.tokenizer.Tokenizer`. Encoding runs with the GIL released.
use std::path::PathBuf;
use std::sync::Arc;

use nano_tokenizer::{
    special, BpeTokenizer, BuildOptions, ChatTemplate, Tokenizer, TokenizerError,
};
use numpy::PyArray1;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

fn to_py_err(e: TokenizerError) -> PyErr {
    match e {
        TokenizerError::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// `None` means all cores; 0 is refused so a typo does not silently mean "all".
fn check_threads(threads: Option<usize>) -> PyResult<Option<usize>> {
    match threads {
        Some(0) => Err(PyValueError::new_err(
            "threads must be at least 1 (or None for all cores)",
        )),
        t => Ok(t),
    }
}

#[pyclass(name = "Tokenizer", module = "nano._native", frozen)]
pub struct PyTokenizer {
    inner: Arc<Tokenizer>,
}

impl PyTokenizer {
    fn wrap(t: Tokenizer) -> Self {
        PyTokenizer { inner: Arc::new(t) }
    }

    fn check_id(&self, id: i64) -> PyResult<u32> {
        let n = self.inner.vocab_size();
        if id < 0 || id as u64 >= n as u64 {
            return Err(PyValueError::new_err(format!(
                "token id {id} out of range (vocabulary size {n})"
            )));
        }
        Ok(id as u32)
    }
}

#[pymethods]
impl PyTokenizer {
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Tokenizer::from_json_str(text)
            .map(Self::wrap)
            .map_err(to_py_err)
    }

    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.detach(|| Tokenizer::from_file(&path))
            .map(Self::wrap)
            .map_err(to_py_err)
    }

    #[staticmethod]
    fn from_tokens(tokens: Vec<String>, special: Vec<bool>) -> PyResult<Self> {
        Tokenizer::from_tokens(tokens, special)
            .map(Self::wrap)
            .map_err(to_py_err)
    }

    /// Builds a vocabulary from texts; returns (tokenizer, report dict items).
    #[staticmethod]
    #[pyo3(signature = (texts, vocab_size, special_tokens, min_char_count=1, max_token_chars=16, threads=None, byte_fallback=false))]
    #[allow(clippy::too_many_arguments)]
    fn build(
        py: Python<'_>,
        texts: Vec<PyBackedStr>,
        vocab_size: usize,
        special_tokens: Vec<String>,
        min_char_count: usize,
        max_token_chars: usize,
        threads: Option<usize>,
        byte_fallback: bool,
    ) -> PyResult<(Self, Vec<(String, f64)>)> {
        let threads = check_threads(threads)?;
        let opts = BuildOptions {
            vocab_size,
            special_tokens,
            min_char_count,
            max_token_chars,
            threads,
            byte_fallback,
        };
        let (tok, report) = py
            .detach(|| {
                let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
                nano_tokenizer::build_vocabulary(&refs, &opts)
            })
            .map_err(to_py_err)?;
        Ok((Self::wrap(tok), report.items()))
    }

    fn to_json(&self) -> String {
        self.inner.to_json_string()
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.save(&path)).map_err(to_py_err)
    }

    #[pyo3(signature = (text, allow_special=false, threads=Some(1)))]
    fn encode(
        &self,
        py: Python<'_>,
        text: PyBackedStr,
        allow_special: bool,
        threads: Option<usize>,
    ) -> PyResult<Vec<u32>> {
        let threads = check_threads(threads)?;
        Ok(py.detach(|| self.inner.encode_parallel(&text, allow_special, threads)))
    }

    #[pyo3(signature = (texts, allow_special=false, threads=None))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<PyBackedStr>,
        allow_special: bool,
        threads: Option<usize>,
    ) -> PyResult<Vec<Vec<u32>>> {
        let threads = check_threads(threads)?;
        Ok(py.detach(|| {
            let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
            self.inner.encode_batch(&refs, allow_special, threads)
        }))
    }

    /// Concatenated ids as one NumPy array (uint32 when `wide`, else uint16), `separator_id`
    /// appended after each text when given.
    #[pyo3(signature = (texts, allow_special=false, threads=None, wide=false, separator_id=None))]
    fn encode_to_numpy<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        allow_special: bool,
        threads: Option<usize>,
        wide: bool,
        separator_id: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let threads = check_threads(threads)?;
        let separator = separator_id.map(|id| self.check_id(id)).transpose()?;
        if !wide && self.inner.vocab_size() > usize::from(u16::MAX) + 1 {
            return Err(PyValueError::new_err(format!(
                "uint16 cannot hold ids of a vocabulary of {} tokens; use uint32",
                self.inner.vocab_size()
            )));
        }
        let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
        if wide {
            let flat: Vec<u32> = py.detach(|| {
                self.inner
                    .encode_flat(&refs, allow_special, threads, separator)
            });
            Ok(PyArray1::from_vec(py, flat).into_any())
        } else {
            let flat: Vec<u16> = py.detach(|| {
                self.inner
                    .encode_flat(&refs, allow_special, threads, separator)
            });
            Ok(PyArray1::from_vec(py, flat).into_any())
        }
    }

    fn decode(&self, ids: Vec<i64>) -> PyResult<String> {
        let ids = ids
            .into_iter()
            .map(|id| self.check_id(id))
            .collect::<PyResult<Vec<u32>>>()?;
        self.inner.decode(&ids).map_err(to_py_err)
    }

    /// The byte a byte token `<0xHH>` stands for; None for other ids.
    fn byte_value(&self, id: i64) -> Option<u8> {
        u32::try_from(id)
            .ok()
            .and_then(|id| self.inner.byte_value(id))
    }

    #[getter]
    fn has_byte_fallback(&self) -> bool {
        self.inner.has_byte_fallback()
    }

    /// (tokens, unknown tokens, characters) of `text`, for corpus statistics.
    #[pyo3(signature = (text, allow_special=false, threads=None))]
    fn count(
        &self,
        py: Python<'_>,
        text: PyBackedStr,
        allow_special: bool,
        threads: Option<usize>,
    ) -> PyResult<(usize, usize, usize)> {
        let threads = check_threads(threads)?;
        Ok(py.detach(|| {
            let ids = self.inner.encode_parallel(&text, allow_special, threads);
            let unknown = self.inner.unknown_id();
            (
                ids.len(),
                ids.iter().filter(|&&i| i == unknown).count(),
                text.chars().count(),
            )
        }))
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    #[getter]
    fn hash(&self) -> String {
        self.inner.hash_hex()
    }

    #[getter]
    fn unknown_id(&self) -> u32 {
        self.inner.unknown_id()
    }

    #[getter]
    fn max_token_chars(&self) -> usize {
        self.inner.max_token_chars()
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    fn id_to_token(&self, id: i64) -> PyResult<String> {
        let id = self.check_id(id)?;
        Ok(self.inner.id_to_token(id).unwrap_or_default().to_string())
    }

    fn is_special(&self, id: i64) -> bool {
        u32::try_from(id).is_ok_and(|id| self.inner.is_special(id))
    }

    fn special_tokens(&self) -> Vec<(String, u32)> {
        self.inner
            .special_tokens()
            .into_iter()
            .map(|(s, i)| (s.to_string(), i))
            .collect()
    }

    fn tokens(&self) -> Vec<String> {
        self.inner.tokens().to_vec()
    }
}

/// `INSTRUCT_MARK prompt RESPONSE_MARK` as ids (the template of `nano_tokenizer::special`).
#[pyfunction]
fn instruction_ids(instruct: u32, prompt: Vec<u32>, response: u32) -> Vec<u32> {
    special::instruction_ids(instruct, &prompt, response)
}

/// A BPE tokenizer read from HF `tokenizer.json` or GGUF metadata (`nano._native.BpeTokenizer`),
/// wrapped by `nano.tokenizer.BpeTokenizer`.
#[pyclass(name = "BpeTokenizer", module = "nano._native", frozen)]
pub struct PyBpeTokenizer {
    inner: Arc<BpeTokenizer>,
}

fn to_ids(ids: Vec<i64>, vocab_size: usize) -> PyResult<Vec<u32>> {
    ids.into_iter()
        .map(|id| {
            u32::try_from(id)
                .ok()
                .filter(|&i| (i as usize) < vocab_size)
                .ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "token id {id} out of range (vocabulary size {vocab_size})"
                    ))
                })
        })
        .collect()
}

#[pymethods]
impl PyBpeTokenizer {
    /// From a `tokenizer.json` file or a folder holding one (plus `tokenizer_config.json`).
    #[staticmethod]
    fn from_hf(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.detach(|| BpeTokenizer::from_hf_path(&path))
            .map(|t| PyBpeTokenizer { inner: Arc::new(t) })
            .map_err(to_py_err)
    }

    /// From the text of a `tokenizer.json`.
    #[staticmethod]
    fn from_hf_json(py: Python<'_>, text: PyBackedStr) -> PyResult<Self> {
        py.detach(|| BpeTokenizer::from_hf_json(&text, Default::default()))
            .map(|t| PyBpeTokenizer { inner: Arc::new(t) })
            .map_err(to_py_err)
    }

    /// From the `tokenizer.ggml.*` metadata of a GGUF file.
    #[staticmethod]
    fn from_gguf(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.detach(|| BpeTokenizer::from_gguf_file(&path))
            .map(|t| PyBpeTokenizer { inner: Arc::new(t) })
            .map_err(to_py_err)
    }

    #[pyo3(signature = (text, allow_special=false, threads=Some(1)))]
    fn encode(
        &self,
        py: Python<'_>,
        text: PyBackedStr,
        allow_special: bool,
        threads: Option<usize>,
    ) -> PyResult<Vec<u32>> {
        let threads = check_threads(threads)?;
        Ok(py.detach(|| self.inner.encode_parallel(&text, allow_special, threads)))
    }

    #[pyo3(signature = (texts, allow_special=false, threads=None))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<PyBackedStr>,
        allow_special: bool,
        threads: Option<usize>,
    ) -> PyResult<Vec<Vec<u32>>> {
        let threads = check_threads(threads)?;
        Ok(py.detach(|| {
            let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
            self.inner.encode_batch(&refs, allow_special, threads)
        }))
    }

    /// Concatenated ids of `texts` as one uint32 NumPy array.
    #[pyo3(signature = (texts, allow_special=false, threads=None))]
    fn encode_to_numpy<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        allow_special: bool,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let threads = check_threads(threads)?;
        let flat = py.detach(|| {
            let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
            self.inner
                .encode_batch(&refs, allow_special, threads)
                .concat()
        });
        Ok(PyArray1::from_vec(py, flat))
    }

    #[pyo3(signature = (ids, skip_special=false))]
    fn decode(&self, ids: Vec<i64>, skip_special: bool) -> PyResult<String> {
        let ids = to_ids(ids, self.inner.vocab_size())?;
        self.inner.decode(&ids, skip_special).map_err(to_py_err)
    }

    #[pyo3(signature = (ids, skip_special=false))]
    fn decode_bytes(&self, ids: Vec<i64>, skip_special: bool) -> PyResult<Vec<u8>> {
        let ids = to_ids(ids, self.inner.vocab_size())?;
        self.inner
            .decode_bytes(&ids, skip_special)
            .map_err(to_py_err)
    }

    /// The pieces the byte-level pattern cuts `text` into (None for SentencePiece).
    fn pre_tokenize(&self, py: Python<'_>, text: PyBackedStr) -> Option<Vec<String>> {
        py.detach(|| {
            self.inner
                .pre_tokenize(&text)
                .map(|v| v.into_iter().map(str::to_string).collect())
        })
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// "byte_level:<pattern>" or "sentencepiece".
    #[getter]
    fn kind(&self) -> String {
        match self.inner.family() {
            nano_tokenizer::bpe::Family::ByteLevel { pattern, .. } => {
                format!("byte_level:{}", pattern.name())
            }
            nano_tokenizer::bpe::Family::SentencePiece { .. } => "sentencepiece".to_string(),
        }
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    fn id_to_token(&self, id: i64) -> PyResult<String> {
        let id = to_ids(vec![id], self.inner.vocab_size())?[0];
        Ok(self.inner.id_to_token(id).unwrap_or_default().to_string())
    }

    fn is_special(&self, id: i64) -> bool {
        u32::try_from(id).is_ok_and(|id| self.inner.is_special(id))
    }

    /// (content, id, special) of each added token.
    fn added_tokens(&self) -> Vec<(String, u32, bool)> {
        self.inner
            .added_tokens()
            .iter()
            .map(|a| (a.content.clone(), a.id, a.special))
            .collect()
    }

    /// bos/eos/pad/unk token names, add_bos_token and chat_template, where known.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let c = self.inner.config();
        let d = pyo3::types::PyDict::new(py);
        d.set_item("bos_token", &c.bos_token)?;
        d.set_item("eos_token", &c.eos_token)?;
        d.set_item("pad_token", &c.pad_token)?;
        d.set_item("unk_token", &c.unk_token)?;
        d.set_item("add_bos_token", c.add_bos_token)?;
        d.set_item("chat_template", &c.chat_template)?;
        Ok(d)
    }
}

/// Renders a Jinja chat template (see `nano_tokenizer::chat`): `messages_json` a JSON list of
/// messages, `variables_json` a JSON object of extra variables.
#[pyfunction]
fn render_chat_template(
    template: &str,
    messages_json: &str,
    add_generation_prompt: bool,
    variables_json: &str,
) -> PyResult<String> {
    ChatTemplate::new(template)
        .and_then(|t| t.render(messages_json, add_generation_prompt, variables_json))
        .map_err(to_py_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenizer>()?;
    m.add_class::<PyBpeTokenizer>()?;
    m.add_function(wrap_pyfunction!(render_chat_template, m)?)?;
    m.add_function(wrap_pyfunction!(instruction_ids, m)?)?;
    m.add(
        "DEFAULT_SPECIAL_TOKENS",
        special::DEFAULT_SPECIAL_TOKENS.to_vec(),
    )?;
    m.add("PADDING", special::PADDING)?;
    m.add("UNKNOWN", special::UNKNOWN)?;
    m.add("BOS", special::BOS)?;
    m.add("EOS", special::EOS)?;
    m.add("INSTRUCT_MARK", special::INSTRUCT_MARK)?;
    m.add("RESPONSE_MARK", special::RESPONSE_MARK)?;
    m.add("CHAT_TEMPLATE", special::chat_template())?;
    Ok(())
}
