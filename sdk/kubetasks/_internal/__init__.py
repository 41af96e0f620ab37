"""The SDK's private machinery: the API-server client, triggering and batch triggering.

Nothing here is public: names may change in any release. Applications use the top-level
``kubetasks`` package (``Client`` and ``configure`` are re-exported there).
"""
