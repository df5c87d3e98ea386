<?php
// Interop check of eventd's PAINT compatibility with PHP's own SoapClient in
// WSDL mode, calling handleRequest the way PAINT's public PHP sample client
// does (positional parts, PHP arrays as Apache maps).
//
// Usage: php paint_client.php BASE_URL ACCOUNT_NAME API_KEY
// The caller (tests/interop.rs) has ingested for the account: OPEN r0@x.test,
// then CLICK c@x.test with url and data {name: "Smith, \"Jo\"\nx", city: "Zürich"}.

function check($cond, $what) {
    if (!$cond) {
        fwrite(STDERR, "FAILED: $what\n");
        exit(1);
    }
}

[$_, $base, $user, $key] = $argv;
$client = new SoapClient("$base/soap/paint?wsdl", ["trace" => 1, "cache_wsdl" => WSDL_CACHE_NONE]);

// The endpoint as tools read it from the WSDL (DOMXPath takes the prefixes
// of the document).
$wsdl = new DOMDocument();
check($wsdl->loadXML(file_get_contents("$base/soap/paint?wsdl")), "the WSDL parses");
$locations = (new DOMXPath($wsdl))->query("//soap:address/@location");
check($locations !== false && $locations->length === 1, "one //soap:address/@location");
check($locations->item(0)->value === "$base/soap/paint", "the endpoint: " . $locations->item(0)->value);

function call($client, $ctx, $class, $process, $entity, $processData) {
    return $client->handleRequest($ctx, $class, $process, $entity, $processData);
}

// Log in: the context id comes back in resultData.bus_entity_context.beanId.
$r = call($client, null, "bus_facade_context", "login", ["userName" => $user, "password" => $key], null);
check($r["result"] === "success", "login: " . print_r($r, true));
$ctx = $r["resultData"]["bus_entity_context"]["beanId"];
check(is_string($ctx) && $ctx !== "", "a context id");

function get_batch($client, $ctx, $types, $markAsRead, $max = null) {
    return call($client, $ctx, "bus_facade_eventNotification", "getBatch", null, [
        "notificationTypes" => $types,
        "maxNotifications" => $max,
        "markAsReadInd" => $markAsRead,
        "customFieldNames" => ["name", "city"],
        "clientType" => "CLIENT_PULL",
    ]);
}

/** The rows of a batch as associative arrays keyed by their trigger's header. */
function rows($batch) {
    $meta = $batch["eventMeta"];
    $csv = fopen("php://memory", "r+");
    fwrite($csv, base64_decode($batch["eventData"]));
    rewind($csv);
    $rows = [];
    while (($row = fgetcsv($csv, 0, ",", "\"", "")) !== false) {
        $header = str_getcsv($meta[$row[0]], ",", "\"", "");
        check(count($header) === count($row), "row width matches its header: " . print_r([$header, $row], true));
        $rows[] = array_combine($header, $row);
    }
    return $rows;
}

// N: nothing is deleted; the same events come back.
foreach ([1, 2] as $round) {
    $r = get_batch($client, $ctx, "CLICK,OPEN", "N");
    check($r["result"] === "success", "getBatch N: " . print_r($r, true));
    $b = $r["resultData"]["bus_entity_eventNotificationBatch"];
    check($b["eventCount"] == 2, "2 events (round $round), got " . $b["eventCount"]);
    check(isset($b["eventMeta"]["OPEN"], $b["eventMeta"]["CLICK"]), "one header per trigger present");
    $rows = rows($b);
    check(count($rows) === 2, "2 CSV rows");
    check($rows[0]["type"] === "OPEN" && $rows[0]["email"] === "r0@x.test", "OPEN row: " . print_r($rows[0], true));
    $click = $rows[1];
    check($click["type"] === "CLICK" && $click["email"] === "c@x.test", "CLICK row");
    check($click["url"] === "https://x.test/a?b=1&c=2", "url column");
    check($click["name"] === "Smith, \"Jo\"\nx", "quoted custom field: " . var_export($click["name"], true));
    check($click["city"] === "Zürich", "non-ASCII custom field");
}

// Y: the returned events are deleted in the same call.
$r = get_batch($client, $ctx, "OPEN,CLICK", "Y", 1);
check($r["resultData"]["bus_entity_eventNotificationBatch"]["eventCount"] == 1, "maxNotifications 1");
$r = get_batch($client, $ctx, "OPEN,CLICK", "Y", 100);
check($r["resultData"]["bus_entity_eventNotificationBatch"]["eventCount"] == 1, "the other event");
check(rows($r["resultData"]["bus_entity_eventNotificationBatch"])[0]["type"] === "CLICK", "the CLICK");
$r = get_batch($client, $ctx, "OPEN,CLICK", "Y");
$b = $r["resultData"]["bus_entity_eventNotificationBatch"];
check($b["eventCount"] == 0, "the queue is empty");
// An empty batch still has eventMeta as an array (the requested headers), so
// the sample client's foreach over it works.
check(is_array($b["eventMeta"]), "eventMeta of an empty batch is an array: " . var_export($b["eventMeta"], true));
check(isset($b["eventMeta"]["OPEN"], $b["eventMeta"]["CLICK"]), "the requested headers");
check(count(rows($b)) === 0, "no rows");

// SIGNUP (Pure360's name of a form sign-up) is OPTIN, answered as SIGNUP.
$r = get_batch($client, $ctx, "SIGNUP", "N");
check($r["result"] === "success", "SIGNUP is accepted: " . print_r($r, true));
check(isset($r["resultData"]["bus_entity_eventNotificationBatch"]["eventMeta"]["SIGNUP"]), "the SIGNUP header");

// Validation: unknown notification types are named.
$r = get_batch($client, $ctx, "OPEN,NOPE", "N");
check($r["result"] === "bean_exception_validation", "unknown type: " . print_r($r, true));
check(strpos($r["resultData"]["notificationTypes"], "NOPE") !== false, "the unknown type is named");

$r = call($client, $ctx, "bus_facade_campaign_email", "search", null, null);
check($r["result"] === "bean_exception_validation" && isset($r["resultData"]["className"]), "unsupported class");

// Logout ends the context.
$r = call($client, $ctx, "bus_facade_context", "logout", null, null);
check($r["result"] === "success", "logout");
$r = get_batch($client, $ctx, "OPEN", "N");
check($r["result"] === "bean_exception_security", "a logged-out context is refused");

$r = call($client, null, "bus_facade_context", "login", ["userName" => $user, "password" => "evk_wrong"], null);
check($r["result"] === "bean_exception_security", "a wrong password is refused");

// A hostile document (a DTD with entities) is refused with a Client fault,
// which SoapClient raises as a SoapFault.
class HostileClient extends SoapClient {
    public function __doRequest($request, $location, $action, $version, $oneWay = false): ?string {
        $evil = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            . '<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/"><E:Body><handleRequest>'
            . '<className>&b;</className></handleRequest></E:Body></E:Envelope>';
        return parent::__doRequest($evil, $location, $action, $version, $oneWay);
    }
}
$hostile = new HostileClient("$base/soap/paint?wsdl", ["cache_wsdl" => WSDL_CACHE_NONE]);
try {
    $hostile->handleRequest(null, "bus_facade_context", "login", null, null);
    check(false, "a DTD must be refused");
} catch (SoapFault $f) {
    check(strpos($f->faultcode, "Client") !== false, "Client fault code, got " . $f->faultcode);
    check(strpos($f->getMessage(), "DTD") !== false, "fault message: " . $f->getMessage());
}

echo "PHP SoapClient PAINT interop: OK\n";
