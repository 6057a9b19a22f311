"""local/language_extensions.py: Fn::ForEach and Fn::FindInMap expanded as CloudFormation's transform
does (tests/integration/test_build.py holds it to the SAM CLI's expansion of what `sam build` ships)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from local.language_extensions import UnsupportedTemplate, expand

TRANSFORMS = ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


def _template(resources: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"Transform": TRANSFORMS, "Resources": resources, **sections}


def test_a_loop_puts_each_item_in_keys_strings_and_refs_and_map_lookups_are_resolved() -> None:
    template = _template(
        {
            "Api": {"Type": "AWS::ApiGatewayV2::Api"},
            "Fn::ForEach::Routes": [
                "Route",
                ["Connect", "Get.Status"],
                {
                    "&{Route}Route": {
                        "Type": "AWS::ApiGatewayV2::Route",
                        "Properties": {
                            "RouteKey": {"Fn::FindInMap": ["Routes", {"Ref": "Route"}, "Key"]},
                            "Target": {"Fn::Sub": "integrations/${Integration}"},
                            "Tags": {"name": "${Route}"},
                        },
                    },
                    "Fn::ForEach::Stages": ["Stage", ["a", "b"], {"&{Route}${Stage}": {"Type": "X"}}],
                },
            ],
        },
        Mappings={"Routes": {"Connect": {"Key": "POST /c"}, "Get.Status": {"Key": "GET /s"}}},
    )
    written = copy.deepcopy(template)
    expanded = expand(template)
    assert template == written  # the template read is left as it was
    assert expanded["Transform"] == "AWS::Serverless-2016-10-31"
    assert list(expanded["Resources"]) == [
        "Api",
        "ConnectRoute",
        "Connecta",
        "Connectb",
        "GetStatusRoute",
        "GetStatusa",
        "GetStatusb",
    ]
    assert expanded["Resources"]["GetStatusRoute"]["Properties"] == {
        "RouteKey": "GET /s",
        "Target": {"Fn::Sub": "integrations/${Integration}"},  # not the loop's: left for CloudFormation
        "Tags": {"name": "Get.Status"},
    }


def test_a_template_without_the_transform_is_read_as_written() -> None:
    template = {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"A": {"Type": "X"}}}
    assert expand(template) is template


@pytest.mark.parametrize(
    ("resources", "parameters", "refused"),
    [
        ({"Fn::ForEach::L": ["Id", {"Ref": "Names"}, {"${Id}": {"Type": "X"}}]}, {}, "literal list"),
        ({"Fn::ForEach::L": ["Id", ["a"], {"${Id}": {"Type": "X"}}]}, {"Id": {}}, "also a parameter"),
        ({"Fn::ForEach::L": ["Id", ["a", "a"], {"${Id}": {"Type": "X"}}]}, {}, "produced twice"),
        ({"a": {"Type": "Y"}, "Fn::ForEach::L": ["Id", ["a"], {"${Id}": {"Type": "X"}}]}, {}, "twice"),
        ({"A": {"Type": "X", "Properties": {"N": {"Fn::Length": [1]}}}}, {}, "Fn::Length"),
        ({"A": {"Type": "X", "Properties": {"N": {"Fn::FindInMap": ["M", "a", "b"]}}}}, {}, "no such entry"),
    ],
)
def test_what_is_not_expanded_here_is_refused_not_passed_on(
    resources: dict[str, Any], parameters: dict[str, Any], refused: str
) -> None:
    with pytest.raises(UnsupportedTemplate, match=refused):
        expand(_template(resources, Parameters=parameters))
