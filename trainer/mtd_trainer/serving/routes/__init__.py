"""The server's routes, one router per API: TGI's, OpenAI's, our extensions, operations."""

from .openai import router as openai
from .ops import router as ops
from .ours import router as ours
from .tgi import router as tgi

__all__ = ["openai", "ops", "ours", "tgi"]
