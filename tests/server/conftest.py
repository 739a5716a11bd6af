"""The server tests use the session's Milvus 2.3.5 server (``milvus_server`` / ``server_uri`` in
``tests/conftest.py``, shared with the reliability suite so one run starts one server)."""
