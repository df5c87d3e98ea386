<?php
// Interop check of the eventNotification SOAP service with PHP's SoapClient
// (WSDL mode, HTTP Basic): each event must decode into an associative array.
//
// Usage: php event_notification_client.php BASE_URL API_KEY
// The caller (tests/interop.rs) has ingested OPEN r0@x.test and CLICK
// c@x.test (url, data {"geo": "FR"}).

function check($cond, $what) {
    if (!$cond) {
        fwrite(STDERR, "FAILED: $what\n");
        exit(1);
    }
}

[$_, $base, $key] = $argv;
$client = new SoapClient("$base/soap/eventNotification?wsdl", [
    "login" => "acme",
    "password" => $key,
    "cache_wsdl" => WSDL_CACHE_NONE,
    "features" => SOAP_SINGLE_ELEMENT_ARRAYS,
]);

// The endpoint as tools read it from the WSDL (DOMXPath takes the prefixes
// of the document).
$wsdl = new DOMDocument();
check($wsdl->loadXML(file_get_contents("$base/soap/eventNotification?wsdl")), "the WSDL parses");
$locations = (new DOMXPath($wsdl))->query("//soap:address/@location");
check($locations !== false && $locations->length === 1, "one //soap:address/@location");
check($locations->item(0)->value === "$base/soap/eventNotification", "the endpoint: " . $locations->item(0)->value);

$status = $client->getQueueStatus();
check($status->pending == 2, "2 pending, got " . $status->pending);

$batch = $client->fetchBatch(["size" => 10, "consumer" => "php", "triggers" => ["OPEN", "CLICK"]]);
check($batch->count == 2, "2 events");
$events = $batch->events->event;
check(is_array($events[0]) && $events[0]["recipient"] === "r0@x.test", "an associative array: " . print_r($events, true));
check($events[1]["trigger"] === "CLICK" && $events[1]["url"] === "https://x.test/a?b=1&c=2", "the CLICK");
check(json_decode($events[1]["data"], true) === ["geo" => "FR"], "data as JSON text");
check(!isset($events[0]["url"]), "absent fields are left out");

$read = $client->markBatchRead(["batchId" => $batch->batchId]);
check($read->deleted == 2, "deleted 2");

try {
    $client->releaseBatch(["batchId" => "no-such-batch"]);
    check(false, "an unknown batch must fault");
} catch (SoapFault $f) {
    check(strpos($f->faultcode, "Client") !== false, "Client fault, got " . $f->faultcode);
}

$bad = new SoapClient("$base/soap/eventNotification?wsdl", ["login" => "acme", "password" => "evk_wrong", "cache_wsdl" => WSDL_CACHE_NONE]);
try {
    $bad->getQueueStatus();
    check(false, "a wrong key must fail");
} catch (SoapFault $f) {
    check(true, "");
}

echo "PHP SoapClient eventNotification interop: OK\n";
