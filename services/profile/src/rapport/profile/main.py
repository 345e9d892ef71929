"""App factory and process entry point.

Stream processing and the profile API arrive with issue 4.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from rapport.common.app import add_readiness_check, create_service_app, run_service
from rapport.common.mongo import create_mongo_client, ping_mongo
from rapport.profile.settings import ProfileSettings


def create_app(settings: ProfileSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = create_mongo_client(settings, app_name=settings.service_name)
        app.state.mongo = mongo
        # MongoDB is the source of truth; Redis is a cache and never gates readiness.
        add_readiness_check(app, "mongo", partial(ping_mongo, mongo))
        try:
            yield
        finally:
            await mongo.close()

    return create_service_app(
        settings,
        title="Rapport profile",
        version="0.1.0",
        description="Profiles, sessions and trending items derived from the event stream.",
        lifespan=lifespan,
    )


def main() -> None:
    run_service(ProfileSettings, create_app)
