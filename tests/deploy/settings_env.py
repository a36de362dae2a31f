"""What a deployment may put in a service's environment: the service's settings (RAG_<FIELD>
of core.settings.Settings) and a few standard variables, with values Settings accepts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from core.settings import Settings

# Besides RAG_<FIELD>: OpenMP's thread count and boto3's credentials and region.
NON_SETTINGS_ENV = frozenset(
    {"OMP_NUM_THREADS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
)
# The thread setting of each model service; the generator runs PARALLEL (models/generator.py)
# generations at once, each on RAG_GENERATOR_THREADS cores.
THREAD_SETTINGS = {"embedder": "RAG_EMBEDDER_THREADS", "generator": "RAG_GENERATOR_THREADS"}


def allowed_env_names() -> frozenset[str]:
    """RAG_<FIELD> for every field of the Settings class, and NON_SETTINGS_ENV."""
    return frozenset(f"RAG_{name.upper()}" for name in Settings.model_fields) | NON_SETTINGS_ENV


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """A Settings read from ``env`` alone (no os.environ, no .env file), parsed exactly as
    pydantic-settings parses a process environment (JSON lists, URLs, bounds...).

    Raises:
        pydantic.ValidationError: a value Settings does not accept.
    """

    class PodEnvironment(EnvSettingsSource):
        def __init__(self, settings_cls: type[BaseSettings]) -> None:
            super().__init__(settings_cls)
            self.env_vars = {k.lower(): v for k, v in env.items()}  # names are case-insensitive

    class PodSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], *args: Any, **kwargs: Any
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (PodEnvironment(settings_cls),)

    return PodSettings()
