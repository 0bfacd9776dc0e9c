"""The ML service (seed `ml_service/`): watermark embedding and verification over HTTP.

It imports nothing from `authchain.chain`; validators reach it only through HTTP/JSON.
"""
