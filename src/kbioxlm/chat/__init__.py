"""The chat-completions client, the answer cache and the prompt templates (``prompts/*.txt``).

Shared by translation (:mod:`kbioxlm.translate`) and the LLM baselines (:mod:`kbioxlm.llm`), which
both sit above this package and do not import each other (docs/design.md, "Package dependencies").
"""
