"""An optional OpenAI-compatible chat model that rephrases the skills' grounded answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import aiohttp

from services.common.logging import get_logger

log = get_logger("cairn.copilot.model")

SYSTEM_PROMPT = (
    "You are Cairn's Pulumi assistant. Answer the user's question using only the facts "
    "given. Keep every name, URN, number and command exactly as given; do not add facts. "
    "Answer in Markdown, briefly."
)


class ChatModel(Protocol):
    async def phrase(self, question: str, facts: Sequence[str]) -> str | None:
        """A rephrased answer, or None when the model cannot help (the facts are used then)."""
        ...


class NoModel:
    """Offline: the skills' own text is the answer."""

    async def phrase(self, question: str, facts: Sequence[str]) -> str | None:
        return None


class OpenAICompatibleModel:
    """`POST {base}/chat/completions` of an OpenAI-compatible server."""

    def __init__(
        self, base_url: str, model: str, api_key: str, timeout_seconds: float = 30.0
    ) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def phrase(self, question: str, facts: Sequence[str]) -> str | None:
        body = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": "Facts:\n" + "\n\n".join(facts) + f"\n\nQuestion: {question}",
                },
            ],
            "temperature": 0,
        }
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(self._url, json=body, headers=headers) as response,
            ):
                if response.status != 200:
                    log.warning("model_refused", status=response.status)
                    return None
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("model_unavailable", error=type(error).__name__)
            return None
        try:
            text = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            log.warning("model_answer_unreadable")
            return None
        return text.strip() if isinstance(text, str) and text.strip() else None
