"""The console on AWS (template.yaml): a private bucket only the distribution reads, /v1/* on the same origin, and
the same CSP as the local front's, with the buckets' presigned URL origins in place of the local endpoint."""
from __future__ import annotations

from pathlib import Path

from samtranslator.yaml_helper import yaml_parse

from sightline_local.console_site import content_security_policy

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (part.split() for part in policy.split(";") if part.strip())
    return {words[0]: words[1:] for words in parts}


def _aws_csp() -> str:
    config = RESOURCES["ConsoleResponseHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
    text, names = config["SecurityHeadersConfig"]["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"]
    for name, value in names.items():
        text = text.replace("${" + name + "}", value["Fn::Sub"])
    return text


def test_the_console_bucket_is_private_and_only_the_distribution_reads_it():
    bucket = RESOURCES["ConsoleBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    statements = RESOURCES["ConsoleBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allows) == 1
    [allow] = allows
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"} and allow["Action"] == "s3:GetObject"
    assert "${ConsoleDistribution}" in allow["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]
    assert any(s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false" for s in statements)
    origin = RESOURCES["ConsoleDistribution"]["Properties"]["DistributionConfig"]["Origins"][0]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["ConsoleOriginAccessControl", "Id"]}
    control = RESOURCES["ConsoleOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert (control["SigningBehavior"], control["SigningProtocol"]) == ("always", "sigv4")


def test_the_api_is_forwarded_on_the_consoles_origin_uncached_with_its_key():
    config = RESOURCES["ConsoleDistribution"]["Properties"]["DistributionConfig"]
    [api] = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/v1/*"]
    assert api["CachePolicyId"] == CACHING_DISABLED
    assert api["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"  # AllViewerExceptHostHeader
    assert {"POST", "PATCH", "DELETE"} <= set(api["AllowedMethods"])
    [origin] = [o for o in config["Origins"] if o["Id"] == api["TargetOriginId"]]
    assert "${SightlineApi}.execute-api" in origin["DomainName"]["Fn::Sub"]
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    for behaviour in [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]:
        assert behaviour["ResponseHeadersPolicyId"] == {"Ref": "ConsoleResponseHeadersPolicy"}
        assert behaviour["ViewerProtocolPolicy"] in ("https-only", "redirect-to-https")


def test_the_aws_csp_is_the_local_one_with_the_buckets_in_place_of_the_local_endpoint():
    aws = _directives(_aws_csp())
    local = _directives(content_security_policy(["http://127.0.0.1:4566"]))
    assert set(aws) == set(local)
    artifacts = "${AWS::StackName}-artifacts-${AWS::AccountId}-${AWS::Region}"
    data = "${AWS::StackName}-data-${AWS::AccountId}-${AWS::Region}"
    for directive, words in local.items():
        if directive in ("img-src", "connect-src"):
            assert [w for w in aws[directive] if not w.startswith("https://")] == \
                   [w for w in words if not w.startswith("http://")], directive
        else:
            assert aws[directive] == words, directive
    assert f"https://{artifacts}.s3.amazonaws.com" in aws["img-src"]
    assert f"https://{artifacts}.s3.${{AWS::Region}}.amazonaws.com" in aws["connect-src"]
    assert f"https://{data}.s3.${{AWS::Region}}.amazonaws.com" in aws["connect-src"]  # presigned uploads
    assert aws["frame-ancestors"] == ["'none'"] and aws["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in _aws_csp()


def test_the_artifact_bucket_lets_only_the_console_read_it_cross_origin():
    [rule] = RESOURCES["ArtifactBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedMethods"] == ["GET", "HEAD"]
    assert rule["AllowedOrigins"] == [{"Fn::Sub": "https://${ConsoleDistribution.DomainName}"}]
