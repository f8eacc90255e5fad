"""Downstream tasks: dataset readers, NER with a constrained CRF, sequence classification, metrics.

Import the pieces from their modules (``kbioxlm.tasks.readers``, ``.metrics``, ``.finetune``); this
package stays import-light so ``kbioxlm --help`` never pulls in torch.
"""
