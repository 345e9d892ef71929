"""Search and read the caller's knowledge. The tenant always comes from the API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from rapport.common.app import link, state_dependency
from rapport.common.auth import SCOPE_KNOWLEDGE_READ, ApiKey, require_scope
from rapport.common.contracts import KnowledgeQuery, KnowledgeResults
from rapport.common.identifiers import NO_SPACE_OR_CONTROL
from rapport.common.problems import problem_responses
from rapport.knowledge.domain import IndexedDocument
from rapport.knowledge.service import KnowledgeService

DocId = Annotated[str, Path(min_length=1, max_length=128, pattern=NO_SPACE_OR_CONTROL)]
Reader = Annotated[ApiKey, Depends(require_scope(SCOPE_KNOWLEDGE_READ))]
Service = Annotated[KnowledgeService, Depends(state_dependency("service", KnowledgeService))]

router = APIRouter(tags=["knowledge"])
DOCUMENT = "/v1/knowledge/{doc_id}"


@router.post(
    "/v1/knowledge/search",
    response_model=KnowledgeResults,
    summary="The passages of the tenant's documents most similar to a message vector",
    description="Takes the message's vector as the encoder made it (recommend returns it "
    "with the message's intent), so the message is encoded once per reply. A vector of "
    "another encoder is refused with `409`. Scores are cosine similarities.",
    responses={
        200: {
            "links": {
                "ReadDocument": link(
                    "GET",
                    DOCUMENT,
                    "What the index holds for the best passage's document.",
                    doc_id="$response.body#/hits/0/doc_id",
                )
            }
        },
        **problem_responses(401, 403, 409, 422, 503),
    },
)
async def search(query: KnowledgeQuery, caller: Reader, service: Service) -> KnowledgeResults:
    return await service.search(caller.tenant, query)


@router.get(
    DOCUMENT,
    response_model=IndexedDocument,
    summary="What the index holds for one document: its chunks and the record they came from",
    responses=problem_responses(401, 403, 404, 422, 503),
)
# A doc_id may hold a `/`, sent as %2F and decoded before routing: this route takes the rest
# of the path. Not the only one: `:path` matches no newline, which the one above refuses.
@router.get(DOCUMENT.replace("{doc_id}", "{doc_id:path}"), include_in_schema=False)
async def get_document(doc_id: DocId, caller: Reader, service: Service) -> IndexedDocument:
    return await service.document(caller.tenant, doc_id)
