"""Our own exceptions, each with a message a user can act on; the CLI and API map them."""


class SlmError(Exception):
    """Base class: the CLI prints the message on one line and exits non-zero."""

    exit_code = 1


class ConfigError(SlmError):
    """The configuration file or environment holds something invalid."""


class DocumentError(SlmError):
    """A document could not be loaded (corrupt, empty, too large, unsupported)."""


class DocumentSkipped(DocumentError):
    """A file that is fine but holds nothing to index (a picture in which OCR finds no text: a logo, a photo):
    ingestion reports it as skipped, not as a failure."""


class SourceError(SlmError):
    """A document source (a website, a bucket, a Git repository) cannot be listed or reached: the run stops
    before anything is removed, so a source that is down never empties the knowledge base."""


class KnowledgeBaseError(SlmError):
    """The knowledge base is missing, locked, or inconsistent."""


class IndexMismatchError(KnowledgeBaseError):
    """The index on disk was built with a different embedding model than the one configured."""


class ModelLoadError(SlmError):
    """A model spec could not be resolved or loaded."""


class GenerationError(SlmError):
    """The generator failed while answering (model error, or the OpenAI-compatible server refused)."""


class TrainingError(SlmError):
    """Training could not start or continue."""


class EvalLeakError(TrainingError):
    """Training data would contain evaluation questions."""


class RegistryError(SlmError):
    """An adapter version is unknown or cannot be promoted."""


class AccessDenied(SlmError):
    """The caller's audiences do not allow this."""


class ApiKeyError(SlmError):
    """An API key name is taken, or the key to revoke is unknown."""


class ExportError(SlmError):
    """A model could not be exported (an architecture or tokenizer the GGUF writer does not know, a bad quant)."""


class RequestTooLarge(SlmError):
    """A question, or the prompt it makes, is over the request budget (answering.max_question_chars,
    answering.max_prompt_tokens). The API answers 422; the CLI exits with 3."""

    exit_code = 3

    def __init__(self, message: str, *, code: str = "prompt_too_long"):
        super().__init__(message)
        self.code = code  # question_too_long | prompt_too_long: the API's error code
