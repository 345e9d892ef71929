"""Real local infrastructure for development, tests and demos.

``rapport-dev up`` starts a Kafka-protocol broker (Tansu), a MongoDB-wire
server (nx-27017), Redis and Triton on free loopback ports, then the services
that are installed; it writes ``.rapport/stack.json``. The pytest plugin in
:mod:`rapport.devstack.pytest_plugin` starts the same servers per test session.
"""
