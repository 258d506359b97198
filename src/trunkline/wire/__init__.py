"""The owned data path: HTTP/1.1 framing, persistent connections, zero-copy receive/send,
socket tuning and TCP_INFO sampling. Everything else (signing, XML, credentials) is borrowed."""
