"""App factory and process entry point. The gateway arrives with issue 6.

Readiness has no hard dependency: the gateway degrades rather than fails when
profile, recommend or Kafka is slow or down (DESIGN.md).
"""

from fastapi import FastAPI

from rapport.common.app import create_service_app, run_service
from rapport.respond.settings import RespondSettings


def create_app(settings: RespondSettings) -> FastAPI:
    return create_service_app(
        settings,
        title="Rapport respond",
        version="0.1.0",
        description="Personalized replies for chatbots; OpenAI-compatible.",
    )


def main() -> None:
    run_service(RespondSettings, create_app)
