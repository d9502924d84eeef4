//! The local decoder: Llama-3.1 and Qwen3 transformer blocks on candle, GGUF and safetensors weights, tokenizer, KV cache and sampler.
