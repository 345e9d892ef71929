"""App factory and process entry point. Inference arrives with issue 5.

Readiness has no hard dependency: Triton and the profile service both have
fallbacks (DESIGN.md), so neither may take this service out of rotation.
"""

from fastapi import FastAPI

from rapport.common.app import create_service_app, run_service
from rapport.recommend.settings import RecommendSettings


def create_app(settings: RecommendSettings) -> FastAPI:
    return create_service_app(
        settings,
        title="Rapport recommend",
        version="0.1.0",
        description="Ranked items and message understanding, served by Triton.",
    )


def main() -> None:
    run_service(RecommendSettings, create_app)
