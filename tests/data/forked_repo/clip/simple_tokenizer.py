"""The stand-in fork's tokenizer: open_clip's BPE, with OpenAI's names for the special tokens."""
from open_clip.tokenizer import SimpleTokenizer as _OpenClipTokenizer


class SimpleTokenizer(_OpenClipTokenizer):
    def __init__(self):
        super().__init__()
        self.encoder["<|startoftext|>"] = self.sot_token_id
        self.encoder["<|endoftext|>"] = self.eot_token_id
