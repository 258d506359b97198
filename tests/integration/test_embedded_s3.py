from __future__ import annotations


def test_seaweedfs_serves_s3(s3server):
    s3server.create_bucket("smoke")
    c = s3server.client()
    c.put_object(Bucket="smoke", Key="k", Body=b"hello")
    assert c.get_object(Bucket="smoke", Key="k")["Body"].read() == b"hello"
