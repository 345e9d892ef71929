"""The outside systems respond talks to: the upstream LLM (llm) and Kafka (recorder).

profile and recommend are called through rapport.common's clients."""
