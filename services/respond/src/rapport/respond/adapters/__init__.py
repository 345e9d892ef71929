"""One module per outside system: the upstream LLM (llm), Kafka (recorder), recommend
(recommend) and knowledge's index or search (knowledge). profile's view is read through
``rapport.common.published``, shared with recommend."""
